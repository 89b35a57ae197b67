"""Sentiment data: the human-rated sentences of Hutto & Gilbert (2014), as a tfds builder + grain pipeline.

Source: the vaderSentiment 3.3.2 source distribution (MIT licence) bundles
additional_resources/hutto_ICWSM_2014.tar.gz with four *_GroundTruth.txt files (id, mean rating in
[-4, 4] from 20+ raters, sentence). 23,703 sentences in four domains.

Labels:
  * binary: positive (mean > 0.5) / negative (mean < -0.5); sentences in between are neutral and carry
    binary = -1 (left out of the binary task);
  * fine: five classes by mean rating: < -2, [-2, -0.5), [-0.5, 0.5], (0.5, 2], > 2.
Splits: 80/10/10 train/validation/test by a hash of (domain, id): stable across runs and machines.

Prepare once (downloads the sdist from PyPI with pip, builds array_record files, no TensorFlow):

    python -m experiments.prepare_data --dataset=vader_sentiment
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import tokenizers
from attention_jax.data.splits import hash_split
from attention_jax.special_tokens import WORD_PAD_ID

VADER_VERSION = '3.3.2'
DOMAIN_FILES = {
    'movie_reviews': 'movieReviewSnippets_GroundTruth.txt',
    'tweets': 'tweets_GroundTruth.txt',
    'amazon_reviews': 'amazonReviewSnippets_GroundTruth.txt',
    'nyt_editorials': 'nytEditorialSnippets_GroundTruth.txt',
}
DOMAINS = tuple(DOMAIN_FILES)
FINE_LABELS = ('very_negative', 'negative', 'neutral', 'positive', 'very_positive')
_FINE_EDGES = (-2.0, -0.5, 0.5, 2.0)
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=vader_sentiment'


def binary_label(score: float) -> int:
  """1 positive (> 0.5), 0 negative (< -0.5), -1 neutral (not part of the binary task)."""
  return 1 if score > 0.5 else 0 if score < -0.5 else -1


def fine_label(score: float) -> int:
  """0..4 by the edges -2, -0.5, 0.5, 2 (the neutral band [-0.5, 0.5] is class 2)."""
  if score < _FINE_EDGES[0]:
    return 0
  if score < _FINE_EDGES[1]:
    return 1
  if score <= _FINE_EDGES[2]:
    return 2
  return 3 if score <= _FINE_EDGES[3] else 4


def split_of(domain: str, example_id: str) -> str:
  """'train' (80%), 'validation' (10%) or 'test' (10%), from a hash of the example's identity."""
  return hash_split(f'{domain}/{example_id}', buckets=10)


def read_ratings(ratings_dir: str) -> list[dict]:
  """Reads the four *_GroundTruth.txt files: [{'id', 'domain', 'text', 'score'}] in file order."""
  examples = []
  for domain, filename in DOMAIN_FILES.items():
    path = os.path.join(ratings_dir, filename)
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} is missing; run `{PREPARE_COMMAND}`.')
    with open(path, encoding='utf-8-sig') as f:
      for line_number, line in enumerate(f, 1):
        line = line.rstrip('\r\n')
        if not line.strip():
          continue
        parts = line.split('\t')
        if len(parts) != 3:
          raise ValueError(f'{path}:{line_number}: expected "id<TAB>mean rating<TAB>text", got {line[:80]!r}.')
        examples.append({'id': parts[0], 'domain': domain, 'text': parts[2].strip(), 'score': float(parts[1])})
  return examples


def fetch_ratings(raw_dir: str) -> str:
  """Downloads vaderSentiment's sdist with pip and extracts the ratings; returns the ratings directory."""
  ratings_dir = os.path.join(raw_dir, 'hutto_ICWSM_2014')
  if all(os.path.exists(os.path.join(ratings_dir, f)) for f in DOMAIN_FILES.values()):
    return ratings_dir
  os.makedirs(raw_dir, exist_ok=True)
  sdist = os.path.join(raw_dir, f'vaderSentiment-{VADER_VERSION}.tar.gz')
  if not os.path.exists(sdist):
    command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
               f'vaderSentiment=={VADER_VERSION}', '-d', raw_dir]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode or not os.path.exists(sdist):
      raise RuntimeError(f'Could not download the vaderSentiment {VADER_VERSION} source distribution with pip '
                         f'({" ".join(command)}):\n{result.stderr[-2000:]}\nDownload it by hand into {raw_dir} and '
                         f'rerun `{PREPARE_COMMAND}`.')
  with tarfile.open(sdist) as outer:
    member = outer.getmember(f'vaderSentiment-{VADER_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz')
    with tarfile.open(fileobj=outer.extractfile(member)) as inner:
      for info in inner.getmembers():
        if info.isfile() and os.path.basename(info.name) in DOMAIN_FILES.values():
          os.makedirs(ratings_dir, exist_ok=True)
          with open(os.path.join(ratings_dir, os.path.basename(info.name)), 'wb') as out:
            out.write(inner.extractfile(info).read())
  return ratings_dir


class VaderSentiment(tfds.core.GeneratorBasedBuilder):
  """Hutto & Gilbert (2014) rated sentences in four domains (array_record; reads `ratings_dir`)."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, ratings_dir: str, **kwargs):
    self._ratings_dir = ratings_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Sentences rated -4..4 by 20+ people (Hutto & Gilbert 2014), from vaderSentiment 3.3.2.',
        features=tfds.features.FeaturesDict({
            'id': tfds.features.Text(),
            'text': tfds.features.Text(),
            'score': tfds.features.Scalar(np.float32),
            'domain': tfds.features.ClassLabel(names=DOMAINS),
            'binary': tfds.features.Scalar(np.int32),     # 1 pos, 0 neg, -1 neutral
            'fine': tfds.features.ClassLabel(names=FINE_LABELS),
        }),
        homepage='https://github.com/cjhutto/vaderSentiment',
        citation='Hutto, C.J. & Gilbert, E.E. (2014). VADER. ICWSM-14.',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    examples = read_ratings(self._ratings_dir)
    return {split: self._generate_examples(examples, split) for split in ('train', 'validation', 'test')}

  def _generate_examples(self, examples, split) -> Iterator[tuple[str, dict]]:
    for ex in examples:
      if split_of(ex['domain'], ex['id']) == split:
        yield f'{ex["domain"]}/{ex["id"]}', {
            'id': ex['id'], 'text': ex['text'], 'score': ex['score'], 'domain': ex['domain'],
            'binary': binary_label(ex['score']), 'fine': fine_label(ex['score'])}


def build(data_dir: str, ratings_dir: str) -> VaderSentiment:
  """Builds (once) the array_record dataset under data_dir from the ratings files."""
  builder = VaderSentiment(ratings_dir=ratings_dir, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  return builder


def prepare(data_dir: str) -> VaderSentiment:
  """Fetch + extract + build: what `experiments.prepare_data --dataset=vader_sentiment` runs."""
  return build(data_dir, fetch_ratings(os.path.join(data_dir, 'downloads', 'vader')))


def load(data_dir: str) -> VaderSentiment:
  """The prepared builder; a clear error with the prepare command if it is not there."""
  builder = VaderSentiment(ratings_dir='', data_dir=data_dir, file_format='array_record')
  if not builder.is_prepared():
    raise FileNotFoundError(f'The vader_sentiment dataset is not prepared in {data_dir}. Run: '
                            f'{PREPARE_COMMAND} --data_dir={data_dir}')
  return builder


# ---- tokenisation and batches -------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
  """Lower-cased words (keeping n't / 's attached) and single punctuation marks."""
  return _TOKEN.findall(text.lower())


class WordVocabulary(tokenizers.WordVocabulary):
  """The sentiment vocabulary: words of `tokenize` (lower-cased words and punctuation marks)."""
  tokenize = staticmethod(tokenize)


def encode_example(example: dict, vocabulary: WordVocabulary, *, max_length: int, label: str) -> dict:
  """A tfds record -> {'tokens' [L] int32 (truncated, PAD-padded), 'label' int32, 'domain' int32}."""
  ids = vocabulary.encode(tokenizers.as_text(example['text']))[:max_length]
  tokens = np.full(max_length, WORD_PAD_ID, np.int32)
  tokens[: len(ids)] = ids
  return {'tokens': tokens, 'label': np.int32(example[label]), 'domain': np.int32(example['domain'])}


def batches(source, vocabulary: WordVocabulary, *, label: str, batch_size: int, max_length: int, seed: int,
            shuffle: bool, process_index: int = 0, process_count: int = 1, drop_remainder: bool = True):
  """A grain pipeline over a tfds data source -> batches {'tokens' [B, L], 'label' [B], 'domain' [B]}.

  label: 'binary' (neutral sentences are filtered out) or 'fine'. With shuffle, the order is a
  deterministic function of the seed and repeats forever (a new permutation per epoch); the returned
  iterator's get_state()/set_state() resume it exactly. Process p of n reads records p, p + n, ...
  """
  if label not in ('binary', 'fine'):
    raise ValueError(f'Unknown sentiment label {label!r}. Valid labels: binary, fine.')
  keep = [i for i in range(len(source)) if label != 'binary' or int(source[i]['binary']) >= 0]
  keep = keep[process_index::process_count]
  dataset = grain.MapDataset.source(keep).map(lambda i: source[i])
  if shuffle:
    dataset = dataset.seed(seed).shuffle().repeat()
  dataset = dataset.map(lambda ex: encode_example(ex, vocabulary, max_length=max_length, label=label))
  return dataset.batch(batch_size, drop_remainder=drop_remainder).to_iter_dataset()
