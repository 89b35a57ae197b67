"""BackgroundBatches: the wrapped iterator's batches in order, built ahead on a thread, with get_state() where the
consumer is (not where the thread got to), errors at the batch that raised them, and a clean close."""

import threading
import time

import numpy as np
import pytest

from attention_jax.data.prefetch import BackgroundBatches


class Counting:
  """A checkpointable iterator of batches {'x': [i, i]} that records how many it has built (and can fail)."""

  def __init__(self, stop: int | None = None, fail_at: int | None = None):
    self.position, self.stop, self.fail_at = 0, stop, fail_at
    self.built = threading.Semaphore(0)

  def __iter__(self):
    return self

  def __next__(self):
    if self.position == self.fail_at:
      raise ValueError(f'bad record at batch {self.position}')
    if self.position == self.stop:
      raise StopIteration
    batch = {'x': np.full(2, self.position)}
    self.position += 1
    self.built.release()
    return batch

  def get_state(self):
    return {'batch': self.position}

  def set_state(self, state):
    self.position = state['batch']


def wait_built(source: Counting, count: int) -> None:
  for _ in range(count):
    assert source.built.acquire(timeout=10), 'the thread did not build ahead'


def test_batches_come_in_order_and_the_state_is_the_consumers():
  source = Counting()
  source.set_state({'batch': 5})                      # a resumed position, set before wrapping
  batches = BackgroundBatches(source, depth=3)
  try:
    assert batches.get_state() == {'batch': 5}
    wait_built(source, 3)                             # three built before any was asked for
    first = next(batches)
    wait_built(source, 1)                             # the freed slot is filled again
    assert source.get_state() == {'batch': 9}         # the thread is 3 batches ahead ...
    assert batches.get_state() == {'batch': 6}        # ... the state is after the batch handed out
    rest = [next(batches)['x'][0] for _ in range(6)]
    assert [first['x'][0], *rest] == list(range(5, 12))
    assert batches.get_state() == {'batch': 12}
  finally:
    batches.close()


def test_a_resumed_run_sees_the_batches_an_uninterrupted_one_saw():
  batches = BackgroundBatches(Counting(), depth=2)
  seen = [next(batches)['x'][0] for _ in range(4)]
  saved = batches.get_state()
  batches.close()
  resumed_source = Counting()
  resumed_source.set_state(saved)
  resumed = BackgroundBatches(resumed_source, depth=2)
  seen += [next(resumed)['x'][0] for _ in range(4)]
  resumed.close()
  assert seen == list(range(8))


def test_the_pipelines_end_and_errors_reach_the_consumer_at_their_batch():
  assert [b['x'][0] for b in BackgroundBatches(Counting(stop=4), depth=2)] == [0, 1, 2, 3]
  batches = BackgroundBatches(Counting(fail_at=3), depth=2)
  assert [next(batches)['x'][0] for _ in range(3)] == [0, 1, 2]
  assert batches.get_state() == {'batch': 3}
  with pytest.raises(ValueError, match='bad record at batch 3'):
    next(batches)
  with pytest.raises(RuntimeError, match='closed'):
    next(batches)


def test_close_stops_the_thread_and_the_wrapper_cannot_be_repositioned():
  source = Counting()
  batches = BackgroundBatches(source, depth=2)
  wait_built(source, 2)
  batches.close()
  assert not batches._thread.is_alive()
  built = source.position
  time.sleep(0.3)                                     # several of the thread's polling intervals
  assert source.position == built                     # nothing is built after close
  with pytest.raises(RuntimeError, match='set_state on the wrapped iterator'):
    batches.set_state({'batch': 0})


@pytest.mark.parametrize('depth', [0, -1, 1.5, True])
def test_bad_depth_is_refused(depth):
  with pytest.raises(ValueError, match='depth'):
    BackgroundBatches(Counting(), depth=depth)


def test_the_config_field_defaults_on_and_a_bad_value_is_refused_before_training():
  from attention_jax import tasks
  config = tasks.get('translation').default_config()
  assert config.train.prefetch_batches == 2
  for bad in (-1, -3):
    config.train.prefetch_batches = bad
    with pytest.raises(ValueError, match=rf'config.train.prefetch_batches={bad} must be an integer >= 0'):
      tasks.get('translation').validate_config(config)
