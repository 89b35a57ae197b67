"""TranslationTask: a built translation dataset with its tokenizers and padded lengths, serving batches.

    task = attention_jax.data.make_task(config.data)     # see attention_jax.data.translation
    batches = task.train_iterator(batch_size=64, seed=0)        # infinite, checkpointable
    batch = next(batches)
        'source'     int32 [B, S]    source ids + EOS, PAD-padded
        'target_in'  int32 [B, T]    BOS + target ids (teacher forcing)
        'target_out' int32 [B, T]    target ids + EOS (labels; PAD = no loss)
        'alignment'  float32 [B, T, S] gold links (tasks with alignments only)
    state = batches.get_state(); ...; batches.set_state(state)   # resume exactly

With bucket boundaries (`task.buckets`, attention_jax.data.batching) every training batch has the shape
(B_b, S_b, T_b) of one length bucket instead of the corpus maximum (S, T), optionally with a token budget per
batch, and evaluation and decoding batches are grouped by length too (their 'index' [B] gives every row's
position in the split, -1 for filler rows, so outputs can be put back in order).

Special ids: attention_jax.special_tokens (PAD 0, BOS 1, EOS 2, UNK 3). Examples that do not fit S / T (with EOS)
are left out. Gold alignments are stored as unit links and mapped onto tokens by attention_jax.data.alignments.
This module never imports models or jax.
"""

from __future__ import annotations

import grain
import numpy as np

from attention_jax.data import alignments
from attention_jax.data import batching
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
    buckets: batching.Buckets of the bucket boundaries given, or None (every batch padded to (S, T)).
  """

  def __init__(self, name: str, sources: dict, source_tokenizer, target_tokenizer, max_source_length: int,
               max_target_length: int, has_alignments: bool, alignment_unit: str = 'char',
               keys: tuple[str, str] = ('source', 'target'), max_train_examples: int = 0,
               truncate_sources: bool = False, bucket_boundaries: tuple[int, ...] = ()):
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
    self.buckets = (batching.Buckets.from_boundaries(bucket_boundaries, max_source_length=self.max_source_length,
                                                     max_target_length=self.max_target_length)
                    if bucket_boundaries else None)
    self._kept: dict[str, list[int]] = {}
    self._lengths: dict[str, tuple[np.ndarray, np.ndarray]] = {}

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
      kept, source_lengths, target_lengths = [], [], []
      for i in range(count):
        lengths = self._lengths_if_fits(source[i])
        if lengths is not None:
          kept.append(i)
          source_lengths.append(lengths[0])
          target_lengths.append(lengths[1])
      self._kept[split] = kept
      self._lengths[split] = (np.asarray(source_lengths, np.int32), np.asarray(target_lengths, np.int32))
    return self._kept[split]

  def lengths(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(source lengths, target lengths) int32 [N] of kept_indices(split), EOS included (sources as cut)."""
    self.kept_indices(split)
    return self._lengths[split]

  def _lengths_if_fits(self, record) -> tuple[int, int] | None:
    source_text, target_text = self.texts(record)
    source_length = len(self.source_tokenizer.encode(source_text))
    target_length = len(self.target_tokenizer.encode(target_text))
    if (0 < source_length and (self.truncate_sources or source_length < self.max_source_length)
        and target_length < self.max_target_length):
      return min(source_length + 1, self.max_source_length), target_length + 1
    return None

  def encode(self, record, source_length: int | None = None, target_length: int | None = None) -> dict[str, np.ndarray]:
    """One tfds record -> arrays padded to (source_length, target_length), default (S, T) (see the module
    docstring). A bucket's lengths must hold the example (sources are cut to S only)."""
    S, T = source_length or self.max_source_length, target_length or self.max_target_length
    source_text, target_text = self.texts(record)
    src, src_members = self._tokenize(self.source_tokenizer, source_text)
    tgt, tgt_members = self._tokenize(self.target_tokenizer, target_text)
    src, tgt = src[: self.max_source_length - 1] + [EOS_ID], tgt[: self.max_target_length - 1]
    if len(src) > S or len(tgt) + 1 > T:
      raise ValueError(f'An example of {len(src)} source / {len(tgt) + 1} target tokens does not fit ({S}, {T}).')
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

  def train_iterator(self, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                     batch_type: str = 'sentences', batch_tokens: int = 0, batch_multiple: int = 1):
    """Infinite batches of the training split in a seeded order (a new permutation every epoch).

    Args:
      batch_size: examples per batch on THIS process (batch_type 'sentences').
      seed: shuffling seed (each epoch is a different permutation, all derived from it).
      process_index, process_count: which rows this process reads (disjoint).
      batch_type: 'sentences', or 'tokens': batch_tokens padded tokens per batch on this process, so longer
        buckets get fewer sentences (see batching.batch_sizes).
      batch_multiple: with buckets or tokens, every global batch size is a multiple of it (the devices).

    Returns:
      An iterator of batch dicts with get_state() / set_state(state) (JSON-serialisable) so a restored run sees
      exactly the batches it would have seen. Without buckets and with sentence batches: a grain pipeline over
      interleaved process shards of (S, T) batches; otherwise batching.BucketedBatches over one global schedule.
    """
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} is not in [0, process_count={process_count}).')
    source = self._source('train')
    if self.buckets is None and batch_type == 'sentences':
      indices = self.kept_indices('train')[process_index::process_count]
      if len(indices) < batch_size:
        raise ValueError(f'Only {len(indices)} training examples for this process, fewer than batch_size='
                         f'{batch_size}.')
      dataset = grain.MapDataset.source(indices).seed(seed).shuffle().repeat()
      dataset = dataset.map(lambda i: self.encode(source[i])).batch(batch_size, drop_remainder=True)
      return iter(dataset.to_iter_dataset())
    indices = self.kept_indices('train')
    buckets = self.buckets or batching.Buckets.from_boundaries(
        (), max_source_length=self.max_source_length, max_target_length=self.max_target_length)
    sizes = batching.batch_sizes(buckets, batch_type=batch_type, batch_size=batch_size * process_count,
                                 batch_tokens=batch_tokens * process_count, multiple=batch_multiple * process_count)
    bucket_ids = buckets.assign(*self.lengths('train'))
    encode = lambda position, S, T: self.encode(source[indices[position]], S, T)
    return batching.BucketedBatches(encode, bucket_ids, buckets, sizes, seed=seed, process_index=process_index,
                                    process_count=process_count)

  def eval_batches(self, split: str, *, batch_size: int, max_examples: int | None = None,
                   by_length: bool = False) -> list[dict]:
    """The split as full batches; filler rows are all-PAD (no loss). 'index' [B] is each row's position in
    `examples(split)` (-1 for filler rows).

    by_length: with buckets, the examples sorted by bucket (by source and target length) and each batch padded to
    the bucket of its longest example; otherwise the split in file order padded to (S, T).
    """
    count = len(self.kept_indices(split)[:max_examples])
    if not by_length or self.buckets is None:
      return [self._batch_of(split, range(start, min(start + batch_size, count)), batch_size)
              for start in range(0, count, batch_size)]
    source_lengths, target_lengths = (lengths[:count] for lengths in self.lengths(split))
    return [batch for batch, _ in self._grouped(split, self.buckets.assign(source_lengths, target_lengths),
                                                 batch_size)]

  def decode_batches(self, split: str, *, batch_size: int,
                     max_examples: int | None = None) -> list[tuple[dict, int]]:
    """Batches for decoding grouped by source length alone (the reference is not looked at), each with the
    longest output to decode: [(batch with 'source' [B, S_b] and 'index' [B], max_length)].

    With buckets the output may run to twice the bucket's target length (at most T); without, to T.
    """
    count = len(self.kept_indices(split)[:max_examples])
    if self.buckets is None:
      return [(batch, self.max_target_length) for batch in self.eval_batches(split, batch_size=batch_size,
                                                                          max_examples=max_examples)]
    grouped = self._grouped(split, self.buckets.assign(self.lengths(split)[0][:count]), batch_size, targets=False)
    return [(batch, min(self.max_target_length, 2 * self.buckets.target_lengths[bucket])) for batch, bucket in grouped]

  def _grouped(self, split: str, bucket_ids: np.ndarray, batch_size: int,
               targets: bool = True) -> list[tuple[dict, int]]:
    """[(batch, bucket)]: the examples sorted by bucket (stable: split order within a bucket) and cut into batches
    of batch_size, each padded to the bucket of its longest example (targets to T when not `targets`): as many
    batches as in split order, at most one program per bucket."""
    order = np.argsort(bucket_ids, kind='stable')
    out = []
    for start in range(0, len(order), batch_size):
      positions = order[start:start + batch_size]
      bucket = int(bucket_ids[positions].max())
      S_b, T_b = self.buckets.shape(bucket)
      batch = self._batch_of(split, positions, batch_size, S_b, T_b if targets else self.max_target_length)
      out.append((batch, bucket))
    return out

  def _batch_of(self, split: str, positions, batch_size: int, source_length: int | None = None,
                target_length: int | None = None) -> dict[str, np.ndarray]:
    """The examples at `positions` of kept_indices(split), padded to batch_size rows, with their 'index'."""
    source, indices = self._source(split), self.kept_indices(split)
    positions = list(positions)
    rows = [self.encode(source[indices[p]], source_length, target_length) for p in positions]
    rows += [None] * (batch_size - len(rows))
    batch = batching.stack_rows(rows)
    batch['index'] = np.asarray(positions + [-1] * (batch_size - len(positions)), np.int32)
    return batch

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
