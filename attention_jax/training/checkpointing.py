"""Checkpoints with orbax: train state (params, optimiser state, step, base PRNG key) and the data-iterator
position, saved together under one step so a restart resumes exactly where the run was.

    workdir/checkpoints/<step>/{state, data}     the last `keep` checkpoints
    workdir/best/<step>/{state, data}            the best one by an evaluation metric

Saves are asynchronous; orbax writes into a temporary directory and renames it when complete, so a run
killed mid-save leaves only complete checkpoints visible to the next run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _manager(directory: str, keep: int, best_metric: str | None = None, best_mode: str = 'min'):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
      best_mode=best_mode,
      cleanup_tmp_directories=True,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class Checkpoints:
  """The run's two checkpoint managers (latest N and best-by-metric)."""

  def __init__(self, workdir: str, *, keep: int = 3, best_metric: str | None = 'loss', best_mode: str = 'min'):
    self.latest = _manager(os.path.join(workdir, 'checkpoints'), keep)
    self.best = _manager(os.path.join(workdir, 'best'), 1, best_metric, best_mode) if best_metric else None
    self._best_metric = best_metric

  def save(self, step: int, state, data_state: dict[str, Any]) -> None:
    self.latest.save(step, args=_save_args(state, data_state))

  def save_best(self, step: int, state, data_state: dict[str, Any], metrics: dict[str, float]) -> None:
    """Offers the state to the best-checkpoint manager (kept only if its metric is the best so far)."""
    if self.best is not None and self._best_metric in metrics:
      self.best.save(step, args=_save_args(state, data_state), metrics={k: float(v) for k, v in metrics.items()},
                     force=True)

  def restore_latest(self, abstract_state) -> tuple[Any, dict] | None:
    """(state, data_state) of the newest complete checkpoint, or None if there is none."""
    return _restore(self.latest, self.latest.latest_step(), abstract_state)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    if self.best is not None:
      self.best.close()


def _save_args(state, data_state):
  return ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))


def _restore(manager, step, abstract_state):
  if step is None:
    return None
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                          data=ocp.args.JsonRestore()))
  return restored['state'], restored['data']


def restore_for_inference(workdir: str, abstract_state, which: str = 'best'):
  """The state saved in `workdir` ('best' falls back to the latest when no best exists)."""
  for name in ((which, 'checkpoints') if which == 'best' else (which,)):
    directory = os.path.join(workdir, name)
    if os.path.isdir(directory):
      manager = ocp.CheckpointManager(os.path.abspath(directory), options=ocp.CheckpointManagerOptions(read_only=True, create=False))
      step = manager.latest_step()
      if step is not None:
        return _restore(manager, step, abstract_state)[0]
  raise FileNotFoundError(f'No checkpoint in {workdir} (looked in {which!r}). Train first with '
                          f'`python -m experiments.train --config=... --workdir={workdir}`.')


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`, for restoring into the same placement."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
