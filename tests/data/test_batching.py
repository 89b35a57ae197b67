"""Length buckets: shapes, assignment, batch sizes, epochs without loss or repetition, exact resume, process rows."""

import json

import numpy as np
import pytest

from attention_jax.data.batching import BucketedBatches, Buckets, batch_sizes, epoch_batches


def test_bucket_shapes_are_proportional_and_end_at_the_maximum():
  buckets = Buckets.from_boundaries((16, 8, 24, 40, 64), max_source_length=40, max_target_length=48)
  assert buckets.source_lengths == (8, 16, 24, 40)          # sorted; >= S dropped; S appended
  assert buckets.target_lengths == (10, 20, 29, 48)         # ceil(S_b * 48 / 40)
  assert Buckets.from_boundaries((), max_source_length=12, max_target_length=5).source_lengths == (12,)
  with pytest.raises(ValueError, match='integers >= 2'):
    Buckets.from_boundaries((1.5,), max_source_length=12, max_target_length=5)


def test_assignment_is_the_first_bucket_both_lengths_fit():
  buckets = Buckets((4, 8, 12), (5, 10, 15))
  source = np.array([1, 4, 5, 4, 12, 3])
  target = np.array([1, 5, 2, 6, 15, 11])
  np.testing.assert_array_equal(buckets.assign(source, target), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(buckets.assign(source), [0, 0, 1, 0, 2, 0])       # by source alone
  with pytest.raises(ValueError, match=r'longer than the largest bucket \(12, 15\)'):
    buckets.assign([13], [1])


def test_token_budget_gives_longer_buckets_fewer_sentences():
  buckets = Buckets((8, 16, 32), (10, 20, 40))
  assert batch_sizes(buckets, batch_type='sentences', batch_size=7) == (7, 7, 7)
  # max(S_b, T_b) tokens per example: 10, 20, 40 -> 400 // each, rounded down to a multiple of 4.
  assert batch_sizes(buckets, batch_type='tokens', batch_size=0, batch_tokens=400, multiple=4) == (40, 20, 8)
  with pytest.raises(ValueError, match='batch_tokens=100 holds no 4 example'):
    batch_sizes(buckets, batch_type='tokens', batch_size=0, batch_tokens=100, multiple=4)
  with pytest.raises(ValueError, match="Unknown batch_type 'words'. Valid batch types: sentences, tokens"):
    batch_sizes(buckets, batch_type='words', batch_size=8)


def test_an_epoch_holds_every_example_once_each_batch_one_bucket():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 3, 101).astype(np.int32)
  sizes = (8, 4, 2)
  batches = epoch_batches(ids, sizes, seed=5, epoch=0)
  seen = np.concatenate([b[b >= 0] for b in batches])
  assert sorted(seen.tolist()) == list(range(101))                    # none lost, none repeated
  for batch in batches:
    real = batch[batch >= 0]
    assert len(set(ids[real].tolist())) == 1 and len(batch) == sizes[ids[real[0]]]
    assert np.all(batch[len(real):] == -1)                             # filler rows only at the end
  fillers = sum(int(np.sum(b < 0)) for b in batches)
  assert fillers == sum((-np.sum(ids == k)) % sizes[k] for k in range(3))   # only the last batch of a bucket
  again = epoch_batches(ids, sizes, seed=5, epoch=0)
  assert all(np.array_equal(a, b) for a, b in zip(batches, again))     # a function of (seed, epoch)
  other = epoch_batches(ids, sizes, seed=5, epoch=1)
  assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def _encode(position, S, T):
  return {'source': np.full(S, position + 1, np.int32), 'target_out': np.full(T, position + 1, np.int32)}


def test_iterator_resumes_exactly_and_splits_rows_over_processes():
  ids = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0], np.int32)
  buckets = Buckets((3, 6), (2, 4))
  make = lambda p=0, n=1: BucketedBatches(_encode, ids, buckets, (4, 2), seed=1, process_index=p, process_count=n)
  first = make()
  got = [next(first) for _ in range(5)]
  for batch in got:
    rows = batch['source'][batch['source'][:, 0] > 0, 0] - 1
    assert batch['source'].shape[1] == buckets.shape(int(ids[rows[0]]))[0]      # the bucket's own shape
    assert set(ids[rows].tolist()) == {int(ids[rows[0]])}
  state = json.loads(json.dumps(first.get_state()))
  expected = [next(first) for _ in range(7)]                 # crosses into the next epochs
  resumed = make()
  resumed.set_state(state)
  for want in expected:
    got_batch = next(resumed)
    np.testing.assert_array_equal(got_batch['source'], want['source'])
  # Two processes: the same global batches, each taking its own half of the rows.
  single, halves = make(), [make(0, 2), make(1, 2)]
  for _ in range(6):
    whole = next(single)
    parts = [next(h) for h in halves]
    np.testing.assert_array_equal(np.concatenate([p['source'] for p in parts]), whole['source'])
  with pytest.raises(ValueError, match='does not split over 3 processes'):
    BucketedBatches(_encode, ids, buckets, (4, 2), seed=0, process_index=0, process_count=3)


@pytest.fixture(scope='module')
def bucketed_task(tmp_path_factory):
  from attention_jax import data
  config = data.default_data_config('copy')
  config.update(data_dir=str(tmp_path_factory.mktemp('data')), num_train=120, num_eval=30, max_length=9,
                alphabet_size=5, bucket_boundaries=(4, 7))
  return data.make_task(config)


def test_bucketed_task_batches_fit_their_bucket_and_cover_the_epoch(bucketed_task):
  task = bucketed_task
  assert task.buckets.source_lengths == (4, 7, task.max_source_length)
  iterator = task.train_iterator(batch_size=8, seed=0, batch_type='tokens', batch_tokens=64, batch_multiple=2)
  sizes = iterator.sizes
  assert sizes == tuple(64 // max(task.buckets.shape(b)) // 2 * 2 for b in range(3))
  source_lengths, target_lengths = task.lengths('train')
  seen = []
  while iterator.get_state()['epoch'] == 0:
    batch = next(iterator)
    S_b, T_b = batch['source'].shape[1], batch['target_out'].shape[1]
    bucket = task.buckets.source_lengths.index(S_b)
    assert T_b == task.buckets.target_lengths[bucket] and len(batch['source']) == sizes[bucket]
    real = batch['target_out'][:, 0] != 0
    # Each example is exactly its fixed-shape encoding cut to the bucket (no token lost to the shorter shape).
    seen += [task.source_tokenizer.decode(s) for s in batch['source'][real]]
  assert sorted(seen) == sorted(source for source, _ in task.examples('train'))     # the epoch: all, once
  fits = task.buckets.assign(source_lengths, target_lengths)
  assert np.all(source_lengths <= np.asarray(task.buckets.source_lengths)[fits])


def test_eval_and_decode_batches_by_length_keep_every_row_s_position(bucketed_task):
  task = bucketed_task
  fixed = task.eval_batches('test', batch_size=8)
  by_length = task.eval_batches('test', batch_size=8, by_length=True)
  assert len({b['source'].shape for b in by_length}) > 1
  assert len(by_length) == len(fixed)               # sorted, then cut: no more batches than in file order
  def rows(batches):
    out = {}
    for batch in batches:
      for k, index in enumerate(batch['index']):
        if index >= 0:
          out[int(index)] = task.target_tokenizer.decode(batch['target_out'][k])
    return out
  assert rows(by_length) == rows(fixed) == dict(enumerate(t for _, t in task.examples('test')))
  decode = task.decode_batches('test', batch_size=8)
  assert len(decode) == len(fixed)
  assert sorted(int(i) for b, _ in decode for i in b['index'] if i >= 0) == list(range(len(task.examples('test'))))
  for batch, max_length in decode:
    bucket = task.buckets.source_lengths.index(batch['source'].shape[1])
    assert max_length == min(task.max_target_length, 2 * task.buckets.target_lengths[bucket])
