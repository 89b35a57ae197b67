"""TranslationTask: a built translation dataset with its tokenizers and padded lengths, serving batches.

    task = attention_jax.data.make_task(config.data)     # see attention_jax.data.translation
    batches = task.train_iterator(batch_size=64, seed=0)        # infinite, checkpointable
    batch = next(batches)
        'source'     int32 [B, S]    source ids + EOS, PAD-padded
        'target_in'  int32 [B, T]    BOS + target ids (teacher forcing)
        'target_out' int32 [B, T]    target ids + EOS (labels; PAD = no loss)
        'alignment'  float32 [B, T, S] gold links (tasks with alignments only)
    state = batches.get_state(); ...; batches.set_state(state)   # resume exactly

Special ids: attention_jax.special_tokens (PAD 0, BOS 1, EOS 2, UNK 3). Examples that do not fit S / T (with EOS)
are left out. Gold alignments are stored as unit links and mapped onto tokens by attention_jax.data.alignments.
This module never imports models or jax.
"""

from __future__ import annotations

import grain
import numpy as np

from attention_jax.data import alignments
from attention_jax.data.tokenizers import CharTokenizer, save_tokenizers
from attention_jax.special_tokens import BOS_ID, EOS_ID


def record_text(value) -> str:
  """A text feature of a tfds record (bytes from array_record, str from other sources) as str."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


class TranslationTask:
  """A built dataset with its tokenizers and fixed padded lengths, serving batches.

  Attributes:
    name: dataset name.
    source_tokenizer, target_tokenizer: encode / decode / tokens / vocab_size (attention_jax.data.tokenizers).
    max_source_length: S (incl. EOS); max_target_length: T (incl. EOS).
    has_alignments: whether batches carry 'alignment'.
    alignment_unit: 'char' or 'word': what the stored gold links index.
    splits: available split names.
    truncate_sources: sources longer than S are cut to their first S - 1 tokens (+ EOS) instead of left out
      (summarisation: the document's beginning carries the summary).
  """

  def __init__(self, name: str, sources: dict, source_tokenizer, target_tokenizer, max_source_length: int,
               max_target_length: int, has_alignments: bool, alignment_unit: str = 'char',
               keys: tuple[str, str] = ('source', 'target'), max_train_examples: int = 0,
               truncate_sources: bool = False):
    if truncate_sources and has_alignments:
      raise ValueError('truncate_sources cuts sources and so their gold alignments: use it without alignments.')
    alignments.check_unit(alignment_unit)
    self.name = name
    self._sources = sources
    self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
    self.max_source_length, self.max_target_length = int(max_source_length), int(max_target_length)
    self.has_alignments = has_alignments
    self.alignment_unit = alignment_unit
    self._keys = keys
    self._max_train_examples = int(max_train_examples)
    self.truncate_sources = bool(truncate_sources)
    self.splits = tuple(sources)
    self._kept: dict[str, list[int]] = {}

  def _source(self, split: str):
    if split not in self._sources:
      raise ValueError(f'Dataset {self.name!r} has no split {split!r}. Valid splits: {", ".join(self.splits)}.')
    return self._sources[split]

  def texts(self, record) -> tuple[str, str]:
    """(source text, target text) of one record."""
    return record_text(record[self._keys[0]]), record_text(record[self._keys[1]])

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
    source_length = len(self.source_tokenizer.encode(source_text))
    return (0 < source_length and (self.truncate_sources or source_length < self.max_source_length)
            and len(self.target_tokenizer.encode(target_text)) < self.max_target_length)

  def encode(self, record) -> dict[str, np.ndarray]:
    """One tfds record -> padded arrays (see the module docstring)."""
    S, T = self.max_source_length, self.max_target_length
    source_text, target_text = self.texts(record)
    src, src_members = self._tokenize(self.source_tokenizer, source_text)
    tgt, tgt_members = self._tokenize(self.target_tokenizer, target_text)
    src, tgt = src[: S - 1] + [EOS_ID], tgt[: T - 1]
    out = {'source': np.zeros(S, np.int32), 'target_in': np.zeros(T, np.int32), 'target_out': np.zeros(T, np.int32)}
    out['source'][: len(src)] = src
    out['target_in'][: len(tgt) + 1] = [BOS_ID] + tgt
    out['target_out'][: len(tgt) + 1] = tgt + [EOS_ID]
    if self.has_alignments:
      alignment = np.zeros((T, S), np.float32)
      alignment[: len(tgt), : len(src) - 1] = alignments.token_alignment(
          record['alignment'], _first(tgt_members, len(tgt)), _first(src_members, len(src) - 1))
      out['alignment'] = alignment
    return out

  def _tokenize(self, tokenizer, text: str) -> tuple[list[int], np.ndarray | None]:
    """Ids and, for tasks with alignments, which alignment units each token covers (bool [tokens, units]; None
    when token i is unit i)."""
    if not self.has_alignments:
      return tokenizer.encode(text), None
    if self.alignment_unit == 'char' and isinstance(tokenizer, CharTokenizer):
      return tokenizer.encode(text), None          # token i is character i: the common, fast case
    ids, spans = tokenizer.encode_with_offsets(text)
    return ids, alignments.token_unit_membership(text, spans, self.alignment_unit)

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
    return save_tokenizers(directory, self.source_tokenizer, self.target_tokenizer, self.max_source_length,
                           self.max_target_length)


def _first(members: np.ndarray | None, count: int):
  """The first `count` rows of a membership matrix, or `count` itself for the identity (None)."""
  return count if members is None else members[:count]
