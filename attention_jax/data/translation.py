"""Translation datasets as tfds builders (array_record, no TensorFlow) fed through grain on the host.

    task = make_task(config.data)                  # builds the synthetic dataset on first use (seconds)
    batches = task.train_iterator(batch_size=64, seed=0)        # infinite, checkpointable
    batch = next(batches)
        'source'     int32 [B, S]    source ids + EOS, PAD-padded
        'target_in'  int32 [B, T]    BOS + target ids (teacher forcing)
        'target_out' int32 [B, T]    target ids + EOS (labels; PAD = no loss)
        'alignment'  float32 [B, T, S] gold links (tasks with alignments only)
    state = batches.get_state(); ...; batches.set_state(state)   # resume exactly

Special ids: PAD 0, BOS 1, EOS 2, UNK 3. Examples that do not fit S / T (with EOS) are left out and counted.
This module never imports models or jax.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import messages
from attention_jax.data import synthetic

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')
MESSAGE_DATASETS = tuple(f'messages_en_{language}' for language in messages.LANGUAGES)
DATASETS = synthetic.TASKS + MESSAGE_DATASETS


def default_data_config(name: str = 'date') -> ml_collections.ConfigDict:
  """The data fields every translation config has (see each field's comment)."""
  config = ml_collections.ConfigDict()
  config.name = name                  # copy | reverse | sort | date | messages_en_fr | messages_en_de | messages_en_es
  config.data_dir = 'data'            # built datasets and vocabularies are cached here
  config.num_train = 20000            # synthetic tasks: training examples
  config.num_eval = 1000              # synthetic tasks: validation / test / test_long examples each
  config.min_length = 3               # copy/reverse/sort: shortest input
  config.max_length = 10              # copy/reverse/sort: longest training input (test_long goes to 2x)
  config.alphabet_size = 10           # copy/reverse/sort: letters used
  config.seed = 0                     # generation seed (the data, not the training order)
  config.max_source_length = 0        # S incl. EOS; 0 = derive from the task
  config.max_target_length = 0        # T incl. EOS; 0 = derive from the task
  config.vocab_size = 4000            # real corpora: SentencePiece vocabulary (shared by source and target)
  return config


class CharVocabulary:
  """Character-level tokenizer: ids 0-3 are PAD, BOS, EOS, UNK, then the characters in the given order."""

  def __init__(self, characters: str):
    if len(set(characters)) != len(characters):
      raise ValueError('CharVocabulary characters must be unique.')
    self.characters = characters
    self._index = {c: i + len(SPECIALS) for i, c in enumerate(characters)}

  @property
  def vocab_size(self) -> int:
    return len(SPECIALS) + len(self.characters)

  def encode(self, text: str) -> list[int]:
    return [self._index.get(c, UNK_ID) for c in text]

  def decode(self, ids: Sequence[int]) -> str:
    """Stops at EOS; drops PAD/BOS; UNK shows as '?'."""
    out = []
    for i in np.asarray(ids).tolist():
      if i == EOS_ID:
        break
      if i >= len(SPECIALS):
        out.append(self.characters[i - len(SPECIALS)])
      elif i == UNK_ID:
        out.append('?')
    return ''.join(out)

  def tokens(self, ids: Sequence[int]) -> list[str]:
    """One display label per id (for heatmap axes), EOS shown as '</s>'."""
    labels = []
    for i in np.asarray(ids).tolist():
      if i == PAD_ID:
        break
      labels.append(SPECIALS[i] if i < len(SPECIALS) else self.characters[i - len(SPECIALS)])
      if i == EOS_ID:
        break
    return labels

  def to_json(self) -> dict:
    return {'type': 'char', 'characters': self.characters}

  @classmethod
  def from_json(cls, data: dict) -> CharVocabulary:
    if data.get('type') != 'char':
      raise ValueError(f'Not a character vocabulary: {data.get("type")!r}.')
    return cls(data['characters'])


class SentencePieceVocabulary:
  """A SentencePiece (unigram) model with ids 0-3 = PAD, BOS, EOS, UNK, trained on the training split."""

  def __init__(self, model_proto: bytes):
    import sentencepiece   # only real corpora need it
    self._proto = model_proto
    self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

  @classmethod
  def train(cls, texts, vocab_size: int, path: str) -> 'SentencePieceVocabulary':
    """Trains deterministically (one thread, fixed input order) and caches the model at `path`."""
    import io
    import sentencepiece
    if not os.path.exists(path):
      model = io.BytesIO()
      sentencepiece.SentencePieceTrainer.train(
          sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type='unigram',
          pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, character_coverage=1.0, num_threads=1,
          hard_vocab_limit=False, minloglevel=2, shuffle_input_sentence=False)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + '.tmp', 'wb') as f:
        f.write(model.getvalue())
      os.replace(path + '.tmp', path)
    with open(path, 'rb') as f:
      return cls(f.read())

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    ids = np.asarray(ids).tolist()
    if EOS_ID in ids:
      ids = ids[: ids.index(EOS_ID)]
    return self._processor.decode([i for i in ids if i > UNK_ID or i == UNK_ID])

  def tokens(self, ids: Sequence[int]) -> list[str]:
    labels = []
    for i in np.asarray(ids).tolist():
      if i == PAD_ID:
        break
      labels.append(SPECIALS[i] if i < len(SPECIALS) else self._processor.id_to_piece(i))
      if i == EOS_ID:
        break
    return labels

  def to_json(self) -> dict:
    import base64
    return {'type': 'sentencepiece', 'model': base64.b64encode(self._proto).decode('ascii')}


def vocabulary_from_json(data: dict):
  """A CharVocabulary or SentencePieceVocabulary from its to_json() form."""
  if data.get('type') == 'sentencepiece':
    import base64
    return SentencePieceVocabulary(base64.b64decode(data['model']))
  return CharVocabulary.from_json(data)


class SyntheticTranslation(tfds.core.GeneratorBasedBuilder):
  """A synthetic task (see attention_jax.data.synthetic) with gold alignments, as array_record files."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, task: str, num_train: int, num_eval: int, seed: int, min_length: int, max_length: int,
               alphabet_size: int, **kwargs):
    self._options = dict(task=task, num_train=num_train, num_eval=num_eval, seed=seed, min_length=min_length,
                         max_length=max_length, alphabet_size=alphabet_size)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Synthetic {self._options["task"]} task with gold alignments; options {self._options}.',
        features=tfds.features.FeaturesDict({
            'source': tfds.features.Text(),
            'target': tfds.features.Text(),
            'alignment': tfds.features.Tensor(shape=(None, 2), dtype=np.int32),   # (target i, source j)
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    o = self._options
    return {split: self._generate_examples(split, o['num_train'] if split == 'train' else o['num_eval'])
            for split in synthetic.splits(o['task'])}

  def _generate_examples(self, split: str, count: int):
    o = self._options
    examples = synthetic.generate(o['task'], split, count, seed=o['seed'], min_length=o['min_length'],
                                  max_length=o['max_length'], alphabet_size=o['alphabet_size'])
    for i, example in enumerate(examples):
      yield i, example


def _synthetic_lengths(config) -> tuple[int, int]:
  if config.name == 'date':
    return 32, 11                               # longest source ~28 characters; 'yyyy-mm-dd' + EOS
  return 2 * config.max_length + 1, 2 * config.max_length + 1   # room for the test_long split


class TranslationTask:
  """A built dataset with its vocabularies and fixed padded lengths, serving batches.

  Attributes:
    name: dataset name.
    source_vocab, target_vocab: tokenizers (encode / decode / tokens / vocab_size).
    max_source_length: S (incl. EOS); max_target_length: T (incl. EOS).
    has_alignments: whether batches carry 'alignment'.
    splits: available split names.
  """

  def __init__(self, name: str, sources: dict, source_vocab, target_vocab, max_source_length: int,
               max_target_length: int, has_alignments: bool):
    self.name = name
    self._sources = sources
    self.source_vocab, self.target_vocab = source_vocab, target_vocab
    self.max_source_length, self.max_target_length = max_source_length, max_target_length
    self.has_alignments = has_alignments
    self.splits = tuple(sources)
    self._kept: dict[str, list[int]] = {}

  def _source(self, split: str):
    if split not in self._sources:
      raise ValueError(f'Dataset {self.name!r} has no split {split!r}. Valid splits: {", ".join(self.splits)}.')
    return self._sources[split]

  def kept_indices(self, split: str) -> list[int]:
    """Indices of the split's records that fit S and T (computed once)."""
    if split not in self._kept:
      source = self._source(split)
      self._kept[split] = [i for i in range(len(source)) if self._fits(source[i])]
    return self._kept[split]

  def _fits(self, record) -> bool:
    return (len(self.source_vocab.encode(_text(record['source']))) < self.max_source_length
            and len(self.target_vocab.encode(_text(record['target']))) < self.max_target_length)

  def encode(self, record) -> dict[str, np.ndarray]:
    """One tfds record -> padded arrays (see the module docstring)."""
    S, T = self.max_source_length, self.max_target_length
    src = self.source_vocab.encode(_text(record['source']))[: S - 1] + [EOS_ID]
    tgt = self.target_vocab.encode(_text(record['target']))[: T - 1]
    out = {'source': np.zeros(S, np.int32), 'target_in': np.zeros(T, np.int32), 'target_out': np.zeros(T, np.int32)}
    out['source'][: len(src)] = src
    out['target_in'][: len(tgt) + 1] = [BOS_ID] + tgt
    out['target_out'][: len(tgt) + 1] = tgt + [EOS_ID]
    if self.has_alignments:
      alignment = np.zeros((T, S), np.float32)
      links = np.asarray(record['alignment']).reshape(-1, 2)
      links = links[(links[:, 0] < len(tgt)) & (links[:, 1] < len(src) - 1)]
      alignment[links[:, 0], links[:, 1]] = 1.0
      out['alignment'] = alignment
    return out

  def train_iterator(self, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
    """Infinite batches of the training split in a seeded order (a new permutation every epoch).

    batch_size is per process; process p of n reads the p-th of n interleaved shards. The returned
    iterator has get_state() / set_state(state) (JSON-serialisable) to resume exactly.
    """
    indices = self.kept_indices('train')[process_index::process_count]
    if len(indices) < batch_size:
      raise ValueError(f'Only {len(indices)} training examples for this process, fewer than batch_size={batch_size}.')
    source = self._source('train')
    dataset = grain.MapDataset.source(indices).seed(seed).shuffle().repeat()
    dataset = dataset.map(lambda i: self.encode(source[i])).batch(batch_size, drop_remainder=True)
    return iter(dataset.to_iter_dataset())

  def eval_batches(self, split: str, *, batch_size: int, max_examples: int | None = None) -> list[dict]:
    """The split in file order as full batches; the last one is padded with all-PAD examples (no loss)."""
    source = self._source(split)
    indices = self.kept_indices(split)[:max_examples]
    batches = []
    for start in range(0, len(indices), batch_size):
      encoded = [self.encode(source[i]) for i in indices[start:start + batch_size]]
      batch = {k: np.stack([e[k] for e in encoded]) for k in encoded[0]}
      pad = batch_size - len(encoded)
      if pad:
        batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
      batches.append(batch)
    return batches

  def examples(self, split: str, max_examples: int | None = None) -> list[tuple[str, str]]:
    """(source text, target text) in the order of eval_batches."""
    source = self._source(split)
    return [(_text(source[i]['source']), _text(source[i]['target'])) for i in self.kept_indices(split)[:max_examples]]

  def save_vocabularies(self, directory: str) -> None:
    """Writes vocab.json so a run directory can reproduce tokenisation (see load_vocabularies)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'vocab.json'), 'w') as f:
      json.dump({'source': self.source_vocab.to_json(), 'target': self.target_vocab.to_json(),
                 'max_source_length': self.max_source_length, 'max_target_length': self.max_target_length}, f)


def load_vocabularies(directory: str) -> tuple[CharVocabulary, CharVocabulary, int, int]:
  """(source vocab, target vocab, S, T) saved by TranslationTask.save_vocabularies."""
  with open(os.path.join(directory, 'vocab.json')) as f:
    data = json.load(f)
  return (vocabulary_from_json(data['source']), vocabulary_from_json(data['target']),
          data['max_source_length'], data['max_target_length'])


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def make_task(data_config) -> TranslationTask:
  """Builds (first time, seconds) or loads the dataset named by data_config.name.

  Raises:
    ValueError: unknown dataset name (the message lists the valid ones).
  """
  name = data_config.name
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}. Valid datasets: {", ".join(DATASETS)}.')
  if name in MESSAGE_DATASETS:
    return _message_task(data_config)
  options = dict(task=name, num_train=int(data_config.num_train), num_eval=int(data_config.num_eval),
                 seed=int(data_config.seed), min_length=int(data_config.min_length),
                 max_length=int(data_config.max_length), alphabet_size=int(data_config.alphabet_size))
  # One cache directory per generation setting, so changing a size never reuses stale data.
  digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
  data_dir = os.path.join(os.path.expanduser(data_config.data_dir), 'synthetic', f'{name}-{digest}')
  builder = SyntheticTranslation(data_dir=data_dir, file_format='array_record', **options)
  if not builder.is_prepared():
    tfds.disable_progress_bar()
    builder.download_and_prepare()
  vocab = CharVocabulary(synthetic.alphabet(name, options['alphabet_size']))
  default_s, default_t = _synthetic_lengths(data_config)
  return TranslationTask(name, builder.as_data_source(), vocab, vocab,
                         int(data_config.max_source_length) or default_s,
                         int(data_config.max_target_length) or default_t, has_alignments=True)


def _message_task(data_config) -> TranslationTask:
  language = data_config.name.rsplit('_', 1)[1]
  data_dir = os.path.expanduser(data_config.data_dir)
  builder = messages.builder(language, data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(f'The {data_config.name} dataset is not prepared in {data_dir}. Run: '
                            f'{messages.PREPARE_COMMAND.format(language=language)} --data_dir={data_dir}')
  sources = builder.as_data_source()
  train = sources['train']

  def texts():
    for i in range(len(train)):
      yield _text(train[i]['source'])
      yield _text(train[i]['target'])

  vocab = SentencePieceVocabulary.train(texts(), int(data_config.vocab_size),
                                        os.path.join(builder.data_dir, f'sentencepiece_{data_config.vocab_size}.model'))
  return TranslationTask(data_config.name, sources, vocab, vocab, int(data_config.max_source_length) or 40,
                         int(data_config.max_target_length) or 48, has_alignments=False)
