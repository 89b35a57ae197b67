"""Length-bucketed batching: every batch has the shape of one bucket, so real corpora train at the cost of their
real lengths instead of the corpus maximum, and XLA compiles one program per bucket and no more.

    buckets = Buckets.from_boundaries((8, 16, 24), max_source_length=40, max_target_length=48)
    ids = buckets.assign(source_lengths, target_lengths)        # [N] the first bucket both lengths fit
    sizes = batch_sizes(buckets, batch_type='tokens', batch_size=64, batch_tokens=2048, multiple=2)
    schedule = epoch_batches(ids, sizes, seed=0, epoch=3)        # [[example positions] per global batch]

A bucket b has shape (S_b, T_b): the source boundaries given (EOS included; S is always the last) and target
lengths in the same proportion, T_b = min(T, ceil(S_b * T / S)), so a bucket holds sources up to S_b tokens and
targets up to T_b tokens; an example goes to the first bucket that fits both.

Batches are built per epoch from (seed, epoch) alone: a seeded permutation of the examples is split by bucket, each
bucket is cut into batches of its size (the last one filled with empty rows, so no example is lost or repeated
within an epoch), and the batches are shuffled. The same schedule on every process, each taking its own block of
rows of every global batch, gives every device and process the same bucket shape at the same step. An iterator's
position is (epoch, batch): `get_state` / `set_state` resume exactly.
This module never imports jax or models.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

BATCH_TYPES = ('sentences', 'tokens')


def check_boundaries(boundaries: Sequence[int], name: str = 'bucket_boundaries') -> None:
  """ValueError unless every boundary is an integer >= 2 (source tokens incl. EOS); `name` names the field."""
  if any(int(b) != b or b < 2 for b in boundaries):
    raise ValueError(f'{name}={tuple(boundaries)} must be integers >= 2 (source tokens incl. EOS), or () for '
                     f'batches padded to the full lengths.')


def padded_length(longest: int, lengths: Sequence[int]) -> int:
  """The length an evaluation batch whose longest example has `longest` positions is padded to: the shortest of
  `lengths` that holds it, or past the last the next multiple of the last (evaluation never cuts an example)."""
  top = max(lengths)
  return next((b for b in sorted(lengths) if b >= longest), -(-longest // top) * top)


def check_batch_type(batch_type: str, name: str = 'batch_type') -> None:
  """ValueError listing the valid batch types unless batch_type is one; `name` names the field."""
  if batch_type not in BATCH_TYPES:
    raise ValueError(f'Unknown {name} {batch_type!r}. Valid batch types: {", ".join(BATCH_TYPES)}.')


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Bucket shapes: source_lengths[b] = S_b and target_lengths[b] = T_b, both ascending; the last is (S, T)."""
  source_lengths: tuple[int, ...]
  target_lengths: tuple[int, ...]

  @classmethod
  def from_boundaries(cls, boundaries: Sequence[int], *, max_source_length: int, max_target_length: int) -> Buckets:
    """Buckets at the given source lengths (EOS included) plus (S, T); boundaries >= S are dropped.

    Raises:
      ValueError: a boundary that is not a positive integer.
    """
    check_boundaries(boundaries)
    S, T = int(max_source_length), int(max_target_length)
    sources = sorted({int(b) for b in boundaries if b < S} | {S})
    targets = [min(T, max(2, math.ceil(s * T / S))) for s in sources]
    return cls(tuple(sources), tuple(targets))

  def __len__(self) -> int:
    return len(self.source_lengths)

  def shape(self, bucket: int) -> tuple[int, int]:
    """(S_b, T_b) of bucket `bucket`."""
    return self.source_lengths[bucket], self.target_lengths[bucket]

  def assign(self, source_lengths, target_lengths=None) -> np.ndarray:
    """int32 [N]: the first bucket whose S_b >= source length and T_b >= target length (lengths incl. EOS).

    With target_lengths None, by source length alone (decoding, where the reference is unknown).
    Raises:
      ValueError: a length beyond (S, T).
    """
    source_lengths = np.asarray(source_lengths)
    by_source = np.searchsorted(np.asarray(self.source_lengths), source_lengths, side='left')
    ids = by_source
    if target_lengths is not None:
      by_target = np.searchsorted(np.asarray(self.target_lengths), np.asarray(target_lengths), side='left')
      ids = np.maximum(by_source, by_target)
    if len(ids) and ids.max() >= len(self):
      raise ValueError(f'An example is longer than the largest bucket {self.shape(len(self) - 1)}.')
    return ids.astype(np.int32)


def batch_sizes(buckets: Buckets, *, batch_type: str, batch_size: int, batch_tokens: int = 0,
                multiple: int = 1) -> tuple[int, ...]:
  """Global examples per batch for every bucket.

  Args:
    batch_type: 'sentences' (batch_size in every bucket) or 'tokens' (as many examples as fit batch_tokens
      padded tokens, max(S_b, T_b) per example: longer buckets get fewer sentences).
    multiple: every size is a multiple of it (the devices x processes the batch is split over).

  Raises:
    ValueError: an unknown batch_type, or a budget too small for one multiple of the longest bucket.
  """
  check_batch_type(batch_type)
  if batch_type == 'sentences':
    return tuple(int(batch_size) for _ in range(len(buckets)))
  sizes = []
  for b in range(len(buckets)):
    per_example = max(buckets.shape(b))
    size = int(batch_tokens) // per_example // multiple * multiple
    if size < multiple:
      raise ValueError(f'batch_tokens={batch_tokens} holds no {multiple} example(s) of bucket {buckets.shape(b)} '
                       f'({per_example} tokens each); use batch_tokens >= {multiple * per_example}.')
    sizes.append(size)
  return tuple(sizes)


def epoch_batches(bucket_ids: np.ndarray, sizes: Sequence[int], *, seed: int, epoch: int) -> list[np.ndarray]:
  """The global batches of one epoch: int64 arrays of example positions (into bucket_ids), -1 for empty rows.

  Every position appears exactly once; batch k holds examples of one bucket only (see the module docstring).
  """
  rng = np.random.default_rng([int(seed), int(epoch)])
  order = rng.permutation(len(bucket_ids))
  batches = []
  for bucket, size in enumerate(sizes):
    members = order[bucket_ids[order] == bucket]
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      batches.append(np.concatenate([chunk, np.full(size - len(chunk), -1, chunk.dtype)]))
  return [batches[i] for i in rng.permutation(len(batches))]


class BucketedBatches:
  """An infinite, checkpointable iterator of this process's rows of the bucketed global batches.

  Args:
    encode: encode(example position, S_b, T_b) -> dict of arrays padded to that bucket's shape.
    bucket_ids: int [N] bucket of every example (Buckets.assign).
    buckets: the bucket shapes.
    sizes: global batch size of every bucket (batch_sizes).
    seed: the schedule's seed.
    process_index, process_count: this process takes rows [p * B / n, (p + 1) * B / n) of every batch.
  """

  def __init__(self, encode: Callable[[int, int, int], dict], bucket_ids: np.ndarray, buckets: Buckets,
               sizes: Sequence[int], *, seed: int, process_index: int = 0, process_count: int = 1):
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} is not in [0, process_count={process_count}).')
    for size in sizes:
      if size % process_count:
        raise ValueError(f'A global batch of {size} examples does not split over {process_count} processes.')
    if not len(bucket_ids):
      raise ValueError('No training examples to batch.')
    self._encode, self._ids, self.buckets, self.sizes = encode, np.asarray(bucket_ids), buckets, tuple(sizes)
    self._seed, self._process_index, self._process_count = int(seed), process_index, process_count
    self._epoch, self._batch, self._schedule = 0, 0, None

  def __iter__(self):
    return self

  def _current_schedule(self) -> list[np.ndarray]:
    if self._schedule is None:
      self._schedule = epoch_batches(self._ids, self.sizes, seed=self._seed, epoch=self._epoch)
    return self._schedule

  def __next__(self) -> dict[str, np.ndarray]:
    schedule = self._current_schedule()
    rows = schedule[self._batch]
    first = int(rows[rows >= 0][0])
    bucket_shape = self.buckets.shape(int(self._ids[first]))
    local = len(rows) // self._process_count
    rows = rows[self._process_index * local:(self._process_index + 1) * local]
    self._batch += 1
    if self._batch == len(schedule):
      self._epoch, self._batch, self._schedule = self._epoch + 1, 0, None
    encoded = [self._encode(int(i), *bucket_shape) if i >= 0 else None for i in rows]
    if all(e is None for e in encoded):        # this process's block is all filler rows
      encoded[0] = {k: np.zeros_like(v) for k, v in self._encode(first, *bucket_shape).items()}
    return stack_rows(encoded)

  def get_state(self) -> dict[str, int]:
    """The position: the next batch is batch `batch` of epoch `epoch` (JSON-serialisable)."""
    return {'epoch': self._epoch, 'batch': self._batch}

  def set_state(self, state: dict[str, int]) -> None:
    self._epoch, self._batch, self._schedule = int(state['epoch']), int(state['batch']), None


def stack_rows(encoded: Sequence[dict | None]) -> dict[str, np.ndarray]:
  """Stacks encoded examples into a batch; None rows become all-zero (PAD) rows of the same shape."""
  template = next(e for e in encoded if e is not None)
  return {k: np.stack([e[k] if e is not None else np.zeros_like(v) for e in encoded]) for k, v in template.items()}
