"""Translation datasets as tfds builders (array_record, no TensorFlow) fed through grain on the host.

    task = make_task(config.data)                  # builds the synthetic dataset on first use (seconds)
    batches = task.train_iterator(batch_size=64, seed=0)        # infinite, checkpointable
    batch = next(batches)
        'source'     int32 [B, S]    source ids + EOS, PAD-padded
        'target_in'  int32 [B, T]    BOS + target ids (teacher forcing)
        'target_out' int32 [B, T]    target ids + EOS (labels; PAD = no loss)
        'alignment'  float32 [B, T, S] gold links (tasks with alignments only)
    state = batches.get_state(); ...; batches.set_state(state)   # resume exactly

Special ids: PAD 0, BOS 1, EOS 2, UNK 3. Examples that do not fit S / T (with EOS) are left out.
Gold alignments are stored per example as int32 [K, 2] links (target unit, source unit), where a unit is
a character (synthetic tasks) or a whitespace-separated word (Bible); `encode` maps them onto token
positions through each token's byte span, so they hold for any tokenizer.
This module never imports models or jax.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import grain
import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import bible
from attention_jax.data import messages
from attention_jax.data import summaries
from attention_jax.data import synthetic
from attention_jax.data.config import (BIBLE_DATASETS, DATASETS, MESSAGE_DATASETS, SUMMARY_DATASETS,  # noqa: F401
                                       TFDS_PREFIX,
                                       TOKENIZER_KINDS, VALID_NAMES_TEXT, check_dataset_name, default_data_config)
from attention_jax.data.tokenizers import (BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, CharVocabulary,  # noqa: F401
                                           SentencePieceVocabulary, load_tokenizers, save_tokenizers,
                                           tokenizer_from_json, vocabulary_from_json)

ALIGNMENT_UNITS = ('char', 'word')
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset={name}'


class TranslationTask:
  """A built dataset with its tokenizers and fixed padded lengths, serving batches.

  Attributes:
    name: dataset name.
    source_tokenizer, target_tokenizer: encode / decode / tokens / vocab_size (also as source_vocab, target_vocab).
    max_source_length: S (incl. EOS); max_target_length: T (incl. EOS).
    has_alignments: whether batches carry 'alignment'.
    alignment_unit: 'char' or 'word': what the stored gold links index.
    splits: available split names.
    truncate_sources: sources longer than S are cut to their first S - 1 tokens (+ EOS) instead of left out
      (summarisation: the document's beginning carries the summary).
  """

  def __init__(self, name: str, sources: dict, source_vocab, target_vocab, max_source_length: int,
               max_target_length: int, has_alignments: bool, alignment_unit: str = 'char',
               keys: tuple[str, str] = ('source', 'target'), max_train_examples: int = 0,
               truncate_sources: bool = False):
    if truncate_sources and has_alignments:
      raise ValueError('truncate_sources cuts sources and so their gold alignments: use it without alignments.')
    if alignment_unit not in ALIGNMENT_UNITS:
      raise ValueError(f'Unknown alignment unit {alignment_unit!r}. Valid units: {", ".join(ALIGNMENT_UNITS)}.')
    self.name = name
    self._sources = sources
    self.source_vocab, self.target_vocab = source_vocab, target_vocab
    self.max_source_length, self.max_target_length = int(max_source_length), int(max_target_length)
    self.has_alignments = has_alignments
    self.alignment_unit = alignment_unit
    self._keys = keys
    self._max_train_examples = int(max_train_examples)
    self.truncate_sources = bool(truncate_sources)
    self.splits = tuple(sources)
    self._kept: dict[str, list[int]] = {}

  @property
  def source_tokenizer(self):
    return self.source_vocab

  @property
  def target_tokenizer(self):
    return self.target_vocab

  def _source(self, split: str):
    if split not in self._sources:
      raise ValueError(f'Dataset {self.name!r} has no split {split!r}. Valid splits: {", ".join(self.splits)}.')
    return self._sources[split]

  def texts(self, record) -> tuple[str, str]:
    """(source text, target text) of one record."""
    return _text(record[self._keys[0]]), _text(record[self._keys[1]])

  def kept_indices(self, split: str) -> list[int]:
    """Indices of the split's records that fit S and T (computed once)."""
    if split not in self._kept:
      source = self._source(split)
      count = len(source)
      if split == 'train' and self._max_train_examples:
        count = min(count, self._max_train_examples)
      self._kept[split] = [i for i in range(count) if self._fits(source[i])]
    return self._kept[split]

  def _fits(self, record) -> bool:
    source_text, target_text = self.texts(record)
    source_length = len(self.source_vocab.encode(source_text))
    return (0 < source_length and (self.truncate_sources or source_length < self.max_source_length)
            and len(self.target_vocab.encode(target_text)) < self.max_target_length)

  def encode(self, record) -> dict[str, np.ndarray]:
    """One tfds record -> padded arrays (see the module docstring)."""
    S, T = self.max_source_length, self.max_target_length
    source_text, target_text = self.texts(record)
    src, src_members = self._tokenize(self.source_vocab, source_text)
    tgt, tgt_members = self._tokenize(self.target_vocab, target_text)
    src, tgt = src[: S - 1] + [EOS_ID], tgt[: T - 1]
    out = {'source': np.zeros(S, np.int32), 'target_in': np.zeros(T, np.int32), 'target_out': np.zeros(T, np.int32)}
    out['source'][: len(src)] = src
    out['target_in'][: len(tgt) + 1] = [BOS_ID] + tgt
    out['target_out'][: len(tgt) + 1] = tgt + [EOS_ID]
    if self.has_alignments:
      alignment = np.zeros((T, S), np.float32)
      alignment[: len(tgt), : len(src) - 1] = token_alignment(
          record['alignment'], _first(tgt_members, len(tgt)), _first(src_members, len(src) - 1))
      out['alignment'] = alignment
    return out

  def _tokenize(self, tokenizer, text: str) -> tuple[list[int], np.ndarray | None]:
    """Ids and, for tasks with alignments, which alignment units each token covers (bool [tokens, units]; None
    when token i is unit i)."""
    if not self.has_alignments:
      return tokenizer.encode(text), None
    if self.alignment_unit == 'char' and isinstance(tokenizer, CharVocabulary):
      return tokenizer.encode(text), None          # token i is character i: the common, fast case
    ids, spans = tokenizer.encode_with_offsets(text)
    return ids, token_unit_membership(text, spans, self.alignment_unit)

  def train_iterator(self, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
    """Infinite batches of the training split in a seeded order (a new permutation every epoch).

    Args:
      batch_size: examples per batch on THIS process.
      seed: shuffling seed (each epoch is a different permutation, all derived from it).
      process_index, process_count: process p of n reads the p-th of n interleaved shards (disjoint).

    Returns:
      A grain DatasetIterator of batch dicts, with get_state() / set_state(state) (JSON-serialisable)
      so a restored run sees exactly the batches it would have seen.
    """
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} is not in [0, process_count={process_count}).')
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
    return [self.texts(source[i]) for i in self.kept_indices(split)[:max_examples]]

  def save_tokenizers(self, directory: str) -> str:
    """Writes <directory>/vocab.json so a run directory reproduces tokenisation (see load_tokenizers)."""
    return save_tokenizers(directory, self.source_vocab, self.target_vocab, self.max_source_length,
                           self.max_target_length)

  save_vocabularies = save_tokenizers


Task = TranslationTask
load_vocabularies = load_tokenizers


def unit_spans(text: str, unit: str) -> np.ndarray:
  """UTF-8 byte spans int [units, 2] of the alignment units of `text`: each character, or each whitespace-separated
  word."""
  if unit not in ALIGNMENT_UNITS:
    raise ValueError(f'Unknown alignment unit {unit!r}. Valid units: {", ".join(ALIGNMENT_UNITS)}.')
  sizes = np.fromiter((len(c.encode('utf-8')) for c in text), np.int64, len(text))
  starts = np.concatenate([[0], np.cumsum(sizes)])             # byte offset of every character (and the end)
  if unit == 'char':
    return np.stack([starts[:-1], starts[1:]], axis=1)
  words = [(m.start(), m.end()) for m in re.finditer(r'\S+', text)]
  return starts[np.asarray(words, np.int64).reshape(-1, 2)]


def token_unit_membership(text: str, token_spans, unit: str) -> np.ndarray:
  """Which alignment units each token covers, bool [tokens, units].

  A token covers every unit that one of its bytes belongs to. A token of whitespace only (SentencePiece's
  bare '▁') takes the units of the token after it, the word it starts.
  """
  spans = unit_spans(text, unit)
  owner = np.full(len(text.encode('utf-8')), -1, np.int64)     # unit of every byte; -1 = whitespace
  for u, (begin, end) in enumerate(spans):
    owner[begin:end] = u
  token_spans = np.asarray(token_spans, np.int64).reshape(-1, 2)
  lengths = np.maximum(token_spans[:, 1] - token_spans[:, 0], 0)
  token_of_byte = np.repeat(np.arange(len(token_spans)), lengths)
  byte = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(token_spans[:, 0],
                                                                                                 lengths)
  members = np.zeros((len(token_spans), len(spans)), bool)
  units = owner[np.clip(byte, 0, max(len(owner) - 1, 0))] if len(owner) else np.zeros(0, np.int64)
  keep = units >= 0
  members[token_of_byte[keep], units[keep]] = True
  for t in range(len(members) - 2, -1, -1):
    if not members[t].any():
      members[t] = members[t + 1]
  return members


def token_alignment(links, target_members, source_members) -> np.ndarray:
  """Token-level gold alignment float32 [target tokens, source tokens].

  Args:
    links: int [K, 2] unit links (target unit, source unit).
    target_members, source_members: bool [tokens, units] from token_unit_membership, or an int number of
      tokens when token i is unit i.

  Returns:
    1.0 where a link joins a unit of the target token to a unit of the source token.
  """
  links = np.asarray(links, np.int64).reshape(-1, 2)
  num_t = target_members if isinstance(target_members, int) else target_members.shape[1]
  num_s = source_members if isinstance(source_members, int) else source_members.shape[1]
  links = links[(links[:, 0] < num_t) & (links[:, 1] < num_s)]
  unit_links = np.zeros((num_t, num_s), np.float32)
  unit_links[links[:, 0], links[:, 1]] = 1.0
  if not isinstance(target_members, int):
    unit_links = target_members.astype(np.float32) @ unit_links
  if not isinstance(source_members, int):
    unit_links = unit_links @ source_members.T.astype(np.float32)
  return (unit_links > 0).astype(np.float32)


def _first(members: np.ndarray | None, count: int):
  """The first `count` rows of a membership matrix, or `count` itself for the identity (None)."""
  return count if members is None else members[:count]


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def make_task(data_config, *, data_dir: str | None = None) -> TranslationTask:
  """Builds (synthetic tasks: on first use, seconds) or loads the dataset named by data_config.name.

  Args:
    data_config: a ConfigDict from default_data_config (possibly edited).
    data_dir: overrides data_config.data_dir.

  Raises:
    ValueError: unknown dataset name or tokenizer (the message lists the valid ones).
    FileNotFoundError: a real corpus that is not prepared; the message names the command that prepares it.
  """
  name = data_config.name
  check_dataset_name(name)
  tokenizer = data_config.get('tokenizer', None) or ('char' if name in synthetic.TASKS else 'sentencepiece')
  if tokenizer not in TOKENIZER_KINDS:
    raise ValueError(f'Unknown tokenizer {tokenizer!r}. Valid tokenizers: {", ".join(TOKENIZER_KINDS)}.')
  data_dir = os.path.expanduser(data_dir or data_config.data_dir)
  if name in synthetic.TASKS:
    return _synthetic_task(data_config, data_dir, tokenizer)
  if name in MESSAGE_DATASETS:
    built = messages.builder(name.rsplit('_', 1)[1], data_dir)
    _require_prepared(built, name, data_dir)
    return _corpus_task(data_config, name, built.as_data_source(), built.data_dir, tokenizer, (40, 48))
  if name in BIBLE_DATASETS:
    built = bible.builder(data_dir)
    _require_prepared(built, name, data_dir)
    return _corpus_task(data_config, name, built.as_data_source(), built.data_dir, tokenizer, (96, 112),
                        has_alignments=True, alignment_unit='word')
  if name in SUMMARY_DATASETS:
    built = summaries.builder(data_dir)
    _require_prepared(built, name, data_dir)
    return _corpus_task(data_config, name, built.as_data_source(), built.data_dir, tokenizer, (128, 24),
                        keys=('document', 'summary'), truncate_sources=True)
  return _tfds_catalog_task(data_config, data_dir, tokenizer)


def _require_prepared(builder, name: str, data_dir: str) -> None:
  if not builder.is_prepared():
    raise FileNotFoundError(f'The {name} dataset is not prepared in {data_dir}. Run: '
                            f'{PREPARE_COMMAND.format(name=name)} --data_dir={data_dir}')


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
            'alignment': tfds.features.Tensor(shape=(None, 2), dtype=np.int32),   # (target char, source char)
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


def synthetic_builder(data_config, data_dir: str) -> SyntheticTranslation:
  """The (possibly not yet built) builder of a synthetic task, one cache directory per generation setting."""
  options = dict(task=data_config.name, num_train=int(data_config.num_train), num_eval=int(data_config.num_eval),
                 seed=int(data_config.seed), min_length=int(data_config.min_length),
                 max_length=int(data_config.max_length), alphabet_size=int(data_config.alphabet_size))
  # Hashing the options means changing a size never reuses stale data.
  digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
  directory = os.path.join(data_dir, 'synthetic', f'{data_config.name}-{digest}')
  return SyntheticTranslation(data_dir=directory, file_format='array_record', **options)


def _synthetic_task(data_config, data_dir: str, tokenizer: str) -> TranslationTask:
  builder = synthetic_builder(data_config, data_dir)
  if not builder.is_prepared():
    tfds.disable_progress_bar()
    builder.download_and_prepare()
  sources = builder.as_data_source()
  if tokenizer == 'char':
    vocab = CharVocabulary(synthetic.alphabet(data_config.name, int(data_config.alphabet_size)))
  else:
    vocab = _train_sentencepiece(sources['train'], ('source', 'target'), int(data_config.vocab_size),
                                 builder.data_dir, 0)
  default_s, default_t = _synthetic_lengths(data_config)
  return TranslationTask(data_config.name, sources, vocab, vocab,
                         int(data_config.max_source_length) or default_s,
                         int(data_config.max_target_length) or default_t, has_alignments=True,
                         alignment_unit='char')


def _train_sentencepiece(train, keys: tuple[str, str], vocab_size: int, cache_dir: str,
                         max_train_examples: int) -> SentencePieceVocabulary:
  """One SentencePiece model shared by source and target, trained on the training split, cached in cache_dir."""
  count = min(len(train), max_train_examples) if max_train_examples else len(train)

  def texts():
    for i in range(count):
      record = train[i]
      yield _text(record[keys[0]])
      yield _text(record[keys[1]])

  suffix = f'_first{count}' if max_train_examples else ''
  return SentencePieceVocabulary.train(texts(), vocab_size,
                                       os.path.join(cache_dir, f'sentencepiece_{vocab_size}{suffix}.model'))


def _char_tokenizer(train, keys: tuple[str, str], max_train_examples: int) -> CharVocabulary:
  """Every character of the training split, sorted (others map to UNK)."""
  count = min(len(train), max_train_examples) if max_train_examples else len(train)
  characters = set()
  for i in range(count):
    record = train[i]
    characters.update(_text(record[keys[0]]))
    characters.update(_text(record[keys[1]]))
  return CharVocabulary(''.join(sorted(characters)))


def _corpus_task(data_config, name: str, sources: dict, cache_dir: str, tokenizer: str,
                 default_lengths: tuple[int, int], *, keys: tuple[str, str] = ('source', 'target'),
                 has_alignments: bool = False, alignment_unit: str = 'char',
                 truncate_sources: bool = False) -> TranslationTask:
  max_train = int(data_config.get('max_train_examples', 0) or 0)
  if tokenizer == 'char':
    vocab = _char_tokenizer(sources['train'], keys, max_train)
  else:
    vocab = _train_sentencepiece(sources['train'], keys, int(data_config.vocab_size), cache_dir, max_train)
  return TranslationTask(name, sources, vocab, vocab, int(data_config.max_source_length) or default_lengths[0],
                         int(data_config.max_target_length) or default_lengths[1], has_alignments=has_alignments,
                         alignment_unit=alignment_unit, keys=keys, max_train_examples=max_train,
                         truncate_sources=truncate_sources)


def tfds_catalog_builder(catalog_name: str, data_dir: str):
  """The tfds catalog builder for 'ted_hrlr_translate/pt_to_en' etc., writing array_record under data_dir/tfds."""
  return tfds.builder(catalog_name, data_dir=os.path.join(data_dir, 'tfds'), file_format='array_record')


def _tfds_catalog_task(data_config, data_dir: str, tokenizer: str) -> TranslationTask:
  """Any tfds catalog translation dataset with supervised keys (source, target), read as array_record."""
  name = data_config.name
  catalog_name = name[len(TFDS_PREFIX):]
  try:
    builder = tfds_catalog_builder(catalog_name, data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(f'{catalog_name!r} is not in the tfds catalog: {error}') from None
  _require_prepared(builder, name, data_dir)
  keys = builder.info.supervised_keys
  if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
    raise ValueError(f'tfds dataset {catalog_name!r} has no (source, target) supervised keys: {keys!r}.')
  splits = tuple(builder.info.splits) or ('train', 'validation', 'test')
  sources = {split: builder.as_data_source(split=split) for split in splits}
  if 'train' not in sources:
    raise ValueError(f'tfds dataset {catalog_name!r} has no train split (splits: {", ".join(splits)}).')
  # The tokenizer cache is ours, beside (not inside) tfds's own directory of the dataset.
  cache_dir = os.path.join(data_dir, 'tfds', 'tokenizers', catalog_name, str(builder.version))
  return _corpus_task(data_config, name, sources, cache_dir, tokenizer, (64, 72), keys=keys)


def prepare_tfds_catalog(catalog_name: str, data_dir: str):
  """Downloads and builds a tfds catalog dataset as array_record (needs the internet; prepare_data runs it)."""
  builder = tfds_catalog_builder(catalog_name, os.path.expanduser(data_dir))
  builder.download_and_prepare()
  return builder
