"""Building the next batches on a background thread while the training step computes.

    batches = BackgroundBatches(task_batches, depth=2)   # after any task_batches.set_state(...) of a resume
    batch = next(batches)                                # built while the previous step ran
    state = batches.get_state()                          # where training is, for a checkpoint
    batches.close()

The host-side pipelines encode and stack every batch in Python (about 12 ms a batch of 128 sentence pairs of the
messages corpus on one Sapphire Rapids core), and a training loop that asks for the next batch only when the step
before it has finished pays that time on every step. A computation releases the GIL while XLA runs it, so a thread
that builds the next batches meanwhile hides most of it, above all while the recurrences' loops leave a core idle.

The wrapped iterator is touched only by the thread once it starts. Its order is unchanged (one thread, first in
first out), and `get_state()` is the wrapped iterator's state after the last batch handed out, not after the last
one built: a checkpoint resumes exactly where training was, however far ahead the thread got. An error in the
pipeline (or its end) reaches the caller at the `next()` that would have returned that batch.
This module never imports jax or models.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

_POLL_SECONDS = 0.1     # how often a thread blocked on a full queue checks whether it was closed


class BackgroundBatches:
  """An iterator over `batches` (a checkpointable iterator: get_state / set_state) built up to `depth` batches ahead
  on a daemon thread."""

  def __init__(self, batches, depth: int = 2):
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
      raise ValueError(f'depth={depth!r} must be an integer >= 1 (batches built ahead).')
    self._batches = batches
    self._state = batches.get_state()
    self._queue: queue.Queue = queue.Queue(maxsize=int(depth))
    self._closed = threading.Event()
    self._thread = threading.Thread(target=self._fill, name='attention_jax-batches', daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._closed.is_set():
      try:
        self._queue.put(item, timeout=_POLL_SECONDS)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self) -> None:
    try:
      while not self._closed.is_set():
        batch = next(self._batches)
        if not self._put((batch, self._batches.get_state(), None)):
          return
    except BaseException as error:    # noqa: BLE001 -- StopIteration or a pipeline error, re-raised by __next__
      self._put((None, None, error))

  def __iter__(self):
    return self

  def __next__(self) -> Any:
    if self._closed.is_set():
      raise RuntimeError('next() on closed BackgroundBatches')
    batch, state, error = self._queue.get()
    if error is not None:
      self.close()
      raise error
    self._state = state
    return batch

  def get_state(self) -> Any:
    """The wrapped iterator's state after the last batch this iterator handed out."""
    return self._state

  def set_state(self, state: Any) -> None:
    raise RuntimeError('BackgroundBatches cannot be repositioned: set_state on the wrapped iterator before '
                       'wrapping it.')

  def close(self) -> None:
    """Stops the thread (it finishes the batch it is building) and drops the batches built ahead. The wrapped
    iterator is then past `get_state()`; `set_state(get_state())` on it goes on from where the consumer was."""
    self._closed.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join()
