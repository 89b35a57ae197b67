"""CoNLL-2003 named-entity recognition (English; PER, ORG, LOC, MISC), as tfds data + bucketed batches.

Two ways in, both giving {'train', 'validation', 'test'} sources of {'tokens': [n] str, 'ner': [n] int} records with
the tag ids of NER_TAGS (the tfds catalog's order):
  - the tfds catalog dataset `conll2003` (downloads the data; tfds's catalog needs TensorFlow installed):
    `python -m experiments.prepare_data --dataset=conll2003`;
  - CoNLL-2003 files you already have (train.txt, valid.txt, test.txt; lines 'word POS chunk NER', blank lines
    between sentences, -DOCSTART- lines ignored), built by ConllFiles with no TensorFlow:
    `python -m experiments.prepare_data --dataset=conll2003 --source_file=DIR`.
No NER corpus ships in any Debian or PyPI package, so there is no offline copy of the real data.

Batches: words lower-cased through a vocabulary of the training words, a capitalisation feature per word (CASES),
each batch padded to one of `bucket_lengths` (attention_jax.data.batching: one compiled program per bucket, the
same bucket on every process); sentences longer than the last bucket are cut for training and kept whole by
`evaluation_batches`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import batching
from attention_jax.data import tokenizers
from attention_jax.special_tokens import WORD_PAD_ID

NER_TAGS = ('O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC')
CATALOG_NAME = 'conll2003'
CATALOG_SPLITS = {'train': 'train', 'validation': 'dev', 'test': 'test'}
FILES = {'train': 'train.txt', 'validation': 'valid.txt', 'test': 'test.txt'}
CASES = ('pad', 'lower', 'title', 'upper', 'digit', 'other')     # capitalisation feature ids
PAD_TAG = -1                                                      # label of padding positions
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=conll2003'


def case_of(word: str) -> int:
  """The capitalisation class of a word: lower / title / upper / digit / other (an index into CASES)."""
  if word.isdigit():
    return CASES.index('digit')
  if word.islower():
    return CASES.index('lower')
  if word.isupper():
    return CASES.index('upper')
  if word[:1].isupper():
    return CASES.index('title')
  return CASES.index('other')


def read_conll(path: str) -> Iterator[dict]:
  """Sentences of a CoNLL-2003 file: {'tokens': [...], 'ner': [...] tag names}; ValueError names a bad line."""
  tokens, tags = [], []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip('\n')
      if not line.strip() or line.startswith('-DOCSTART-'):
        if tokens:
          yield {'tokens': tokens, 'ner': tags}
        tokens, tags = [], []
        continue
      fields = line.split(' ')
      if len(fields) != 4 or fields[3] not in NER_TAGS:
        raise ValueError(f'{path}:{number}: expected "word POS chunk NER" with NER one of {", ".join(NER_TAGS)}; '
                         f'got {line!r}.')
      tokens.append(fields[0])
      tags.append(fields[3])
  if tokens:
    yield {'tokens': tokens, 'ner': tags}


class ConllFiles(tfds.core.GeneratorBasedBuilder):
  """CoNLL-2003 from local files (`source_dir` holding train.txt, valid.txt, test.txt), without TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, source_dir: str = '', **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description='CoNLL-2003 English NER read from local files.',
        features=tfds.features.FeaturesDict({
            'tokens': tfds.features.Sequence(tfds.features.Text()),
            'ner': tfds.features.Sequence(tfds.features.ClassLabel(names=NER_TAGS)),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    missing = [name for name in FILES.values() if not os.path.exists(os.path.join(self._source_dir, name))]
    if missing:
      raise FileNotFoundError(f'{self._source_dir} lacks {", ".join(missing)}: give the directory holding the '
                              f'CoNLL-2003 files {", ".join(FILES.values())}.')
    return {split: self._generate_examples(os.path.join(self._source_dir, name)) for split, name in FILES.items()}

  def _generate_examples(self, path):
    yield from enumerate(read_conll(path))


def prepare(data_dir: str, *, source_file: str = '') -> tfds.core.DatasetBuilder:
  """Builds CoNLL-2003: from local files when `source_file` names their directory, else the tfds catalog."""
  if source_file:
    builder = ConllFiles(source_dir=source_file, data_dir=data_dir, file_format='array_record')
  else:
    builder = catalog_builder(data_dir)
  builder.download_and_prepare()
  return builder


def catalog_builder(data_dir: str):
  try:
    return tfds.builder(CATALOG_NAME, data_dir=data_dir, file_format='array_record')
  except (ImportError, AttributeError) as error:        # tfds's catalog imports TensorFlow
    raise ValueError(f'The tfds catalog dataset {CATALOG_NAME!r} needs TensorFlow ({error}). Install it '
                       '(pip install tensorflow-cpu), or build from local CoNLL-2003 files: '
                       f'{PREPARE_COMMAND} --source_file=DIR') from None


def load_sources(data_dir: str) -> dict:
  """{'train', 'validation', 'test'} random-access sources of whichever build data_dir holds."""
  files = ConllFiles(data_dir=data_dir, file_format='array_record')
  if files.is_prepared():
    return files.as_data_source()
  if os.path.isdir(os.path.join(data_dir, CATALOG_NAME)):
    builder = catalog_builder(data_dir)
    return {split: builder.as_data_source(split=name) for split, name in CATALOG_SPLITS.items()}
  raise FileNotFoundError(f'CoNLL-2003 is not prepared in {data_dir}. Run: {PREPARE_COMMAND} --data_dir={data_dir} '
                          '(the tfds catalog; needs the internet and TensorFlow) or add --source_file=DIR with '
                          'your copy of the CoNLL-2003 files.')


def lower_tokens(tokens) -> list[str]:
  """A sentence's tokens (str or UTF-8 bytes) lower-cased."""
  return [tokenizers.as_text(t).lower() for t in tokens]


class TagVocabulary(tokenizers.WordVocabulary):
  """Lower-cased words of the training sentences (tokenizers.WordVocabulary over given tokens)."""
  tokenize = staticmethod(lower_tokens)

  @classmethod
  def from_source(cls, source, *, min_count: int = 2, max_size: int = 30000) -> TagVocabulary:
    return cls.build((source[i]['tokens'] for i in range(len(source))), min_count=min_count, max_size=max_size)


def encode_example(example: dict, vocabulary: TagVocabulary, *, max_length: int) -> dict:
  """-> {'words', 'cases', 'tags' [max_length] int32, 'length' int32}; padding: WORD_PAD_ID, case 0, PAD_TAG."""
  # Words and tags pair up one to one (tfds's mock data draws the two lengths independently: the shorter wins).
  tokens = [tokenizers.as_text(t) for t in example['tokens']][:min(max_length, len(example['ner']))]
  words = np.full(max_length, WORD_PAD_ID, np.int32)
  cases = np.zeros(max_length, np.int32)
  tags = np.full(max_length, PAD_TAG, np.int32)
  words[:len(tokens)] = vocabulary.encode(tokens)
  cases[:len(tokens)] = [case_of(t) for t in tokens]
  tags[:len(tokens)] = np.asarray(example['ner'], np.int32)[:len(tokens)]
  return {'words': words, 'cases': cases, 'tags': tags, 'length': np.int32(len(tokens))}


def batches(source, vocabulary: TagVocabulary, *, batch_size: int, bucket_lengths: Sequence[int], seed: int,
            process_index: int = 0, process_count: int = 1) -> batching.BucketedBatches:
  """Training batches of `batch_size` sentences (global): {'words', 'cases', 'tags' [B, L], 'length' [B]}, L the
  shortest of bucket_lengths holding the batch's sentences (longer ones are cut to the last).

  attention_jax.data.batching's schedule: every process the same bucket at every step and its own rows; a seeded
  order per epoch; get_state() / set_state() resume it exactly.
  """
  batching.check_boundaries(bucket_lengths, 'bucket_lengths')
  top = max(bucket_lengths)
  buckets = batching.Buckets.from_boundaries(bucket_lengths, max_source_length=top, max_target_length=top)
  records = [source[i] for i in range(len(source))]
  lengths = [min(len(r['tokens']), len(r['ner']), top) for r in records]
  sizes = batching.batch_sizes(buckets, batch_type='sentences', batch_size=batch_size)
  encode = lambda i, length, _: encode_example(records[i], vocabulary, max_length=length)
  return batching.BucketedBatches(encode, buckets.assign(lengths), buckets, sizes, seed=seed,
                                  process_index=process_index, process_count=process_count)


def evaluation_batches(source, vocabulary: TagVocabulary, *, batch_size: int, bucket_lengths: Sequence[int]):
  """Every sentence whole, in corpus order: batches padded to the shortest bucket that holds their longest
  sentence (past the last bucket, to the next multiple of it), plus 'text': the batch's words as lists."""
  examples = [source[i] for i in range(len(source))]
  for start in range(0, len(examples), batch_size):
    chunk = examples[start:start + batch_size]
    length = batching.padded_length(max(min(len(e['tokens']), len(e['ner'])) for e in chunk), bucket_lengths)
    encoded = [encode_example(e, vocabulary, max_length=length) for e in chunk]
    batch = {k: np.stack([e[k] for e in encoded]) for k in encoded[0]}
    batch['text'] = [[tokenizers.as_text(t) for t in e['tokens']][:n] for e, n in zip(chunk, batch['length'])]
    yield batch
