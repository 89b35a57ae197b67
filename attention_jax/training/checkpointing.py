"""Checkpoints with orbax: train state (params, optimiser state, step, base PRNG key) and the data-iterator
position, saved together under one step so a restart resumes exactly where the run was.

    workdir/checkpoints/<step>/{state, data}     the last `keep` checkpoints
    workdir/best/<step>/{state, data}            the best one by an evaluation metric
    workdir/averaged/<step>/{state, data}        the newest checkpoint with the mean parameters of the last N

Saves are asynchronous; orbax writes into a temporary directory and renames it when complete, so a run
killed mid-save leaves only complete checkpoints visible to the next run.

Restoring a checkpoint whose arrays do not fit the state it is restored into (written by another model config)
raises a ValueError naming the checkpoint and the first differing array. A checkpoint written before the optimizer
packed its small parameter leaves (`packed_optimizer`) is restored with its moments packed.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from attention_jax.training import packed_optimizer

AVERAGED = 'averaged'
# restore_for_inference's names for the directories under a workdir that are not the directory name itself.
_DIRECTORY_OF = {'latest': 'checkpoints'}
_FROM_ANOTHER_CONFIG = ('the model the config builds', 'Use the config it was trained with, or a fresh --workdir.')


def _item_handlers():
  return {'state': ocp.StandardCheckpointHandler(), 'data': ocp.JsonCheckpointHandler()}


def _manager(directory: str, keep: int, best_metric: str | None = None, best_mode: str = 'min'):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
      best_mode=best_mode,
      cleanup_tmp_directories=True,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=_item_handlers())


def _read_only_manager(directory: str):
  return ocp.CheckpointManager(os.path.abspath(directory), item_handlers=_item_handlers(),
                               options=ocp.CheckpointManagerOptions(read_only=True, create=False))


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
    """(state, data_state) of the newest complete checkpoint, or None if there is none.

    Raises:
      ValueError: the checkpoint's arrays do not fit `abstract_state` (it was written by another model config).
    """
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


def _restore(manager, step, abstract_state, expected: tuple[str, str] = _FROM_ANOTHER_CONFIG):
  """(state, data_state) of `step`, or None if step is None. `expected` = (what abstract_state is, what to do) for
  the message of a checkpoint that does not fit it.

  The saved arrays' shapes (orbax's metadata) are compared with abstract_state's before restoring: orbax reports a
  mismatch with a dump of both trees, and a failed read leaves its pending reads printing tracebacks at exit."""
  if step is None:
    return None
  saved_tree = _saved_metadata(manager, step)
  differences = _differences(saved_tree, abstract_state)
  if differences and all(path.startswith('opt_state/') for path, _, _ in differences):
    # Perhaps written before the optimizer packed its small leaves (packed_optimizer): its moments are parameter-
    # shaped trees where abstract_state has PackedLeaves. Restored as saved and packed, the run goes on with the
    # same parameters and moments.
    restored = _read_as_saved(manager, step, saved_tree)
    state = _with_packed_optimizer_state(restored['state'], abstract_state)
    if state is not None:
      return state, restored['data']
  if differences:
    raise ValueError(_mismatch_message(os.path.join(str(manager.directory), str(step)), differences, *expected))
  restored = _read(manager, step, abstract_state)
  return restored['state'], restored['data']


def _read(manager, step, abstract_state) -> dict:
  """{'state': the train state restored into abstract_state, 'data': the data-iterator state} of `step`."""
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                       data=ocp.args.JsonRestore()))


def _read_as_saved(manager, step, saved_tree) -> dict:
  """_read with the state as saved (nested dicts and lists, on the first local device), whatever it will fill."""
  return _read(manager, step, _abstract_from_metadata(saved_tree))


def _is_packed(node) -> bool:
  return isinstance(node, packed_optimizer.PackedLeaves)


def _with_packed_optimizer_state(saved_state, abstract_state):
  """abstract_state's tree filled from `saved_state` (a checkpoint restored as saved: nested dicts and lists), whose
  optimizer state holds a parameter-shaped tree wherever abstract_state holds PackedLeaves, packed (per seed when
  the states are stacked along leading seed axes); placed and typed as abstract_state's leaves are. None if the
  saved state is not that (another model or optimizer)."""
  nodes, treedef = jax.tree_util.tree_flatten_with_path(abstract_state, is_leaf=_is_packed)
  values = []
  try:
    for path, node in nodes:
      saved = saved_state
      for key in path:
        saved = saved[key.key if isinstance(key, jax.tree_util.DictKey) else
                      key.name if isinstance(key, jax.tree_util.GetAttrKey) else key.idx]
      if _is_packed(node):
        pack = packed_optimizer.pack
        for _ in range(node.small.ndim - 1):        # stacked seeds: [K, N]
          pack = jax.vmap(pack)
        saved = pack(jax.tree.map(np.asarray, saved))
        if (saved.small.shape != node.small.shape or
            [np.shape(leaf) for leaf in saved.large] != [leaf.shape for leaf in node.large]):
          return None
        values.append(jax.tree.map(_placed_like, saved, node))
      elif not hasattr(node, 'shape'):                   # a Python scalar in the abstract state (the step)
        values.append(type(node)(np.asarray(saved)))
      elif not hasattr(saved, 'shape') or saved.shape != node.shape:
        return None
      else:
        values.append(_placed_like(saved, node))
  except (KeyError, IndexError, TypeError, AttributeError, ValueError):
    return None
  return jax.tree_util.tree_unflatten(treedef, values)


def _placed_like(array, abstract):
  """`array` with the dtype and placement of `abstract` (a ShapeDtypeStruct), through the host, so that a state
  restored on one device can go to a sharding over several processes."""
  return jax.device_put(np.asarray(jax.device_get(array)).astype(abstract.dtype), abstract.sharding)


def _saved_metadata(manager, step):
  """The saved train state's tree with orbax ArrayMetadata (shape, dtype) leaves, or None without metadata."""
  metadata = manager.item_metadata(step)
  state = metadata['state'] if metadata is not None and 'state' in metadata else None
  return state.tree if state is not None else None


def _differences(saved_tree, abstract_state) -> list[tuple[str, tuple | None, tuple | None]]:
  """[(array path 'a/b/c', saved shape or None if absent, expected shape or None if absent)] where the saved
  tree and abstract_state differ: the parameters first (they name the layer), then the other arrays expected,
  then those only saved. [] when there is no saved tree to compare with."""
  if saved_tree is None:
    return []
  saved = {path: _shape(leaf) for path, leaf in ocp.tree.to_flat_dict(saved_tree).items()}
  wanted = {path: _shape(leaf) for path, leaf in ocp.tree.to_flat_dict(abstract_state).items()}
  differences = [(path, saved.get(path), shape) for path, shape in wanted.items() if saved.get(path) != shape]
  differences += [(path, shape, None) for path, shape in saved.items() if path not in wanted]
  differences.sort(key=lambda difference: difference[0][0] != 'params')      # stable: keeps each group's order
  return [('/'.join(str(key) for key in path), saved_shape, shape) for path, saved_shape, shape in differences]


def _shape(leaf) -> tuple:
  """The shape of an array, ShapeDtypeStruct, orbax metadata entry or Python scalar (())."""
  return tuple(leaf.shape) if hasattr(leaf, 'shape') else np.shape(leaf)


def _mismatch_message(directory: str, differences, expected: str, advice: str) -> str:
  path, saved, wanted = differences[0]
  if saved is None:
    first = f'{path} is not in the checkpoint'
  elif wanted is None:
    first = f'{path} is only in the checkpoint'
  else:
    first = f'{path} is saved as {saved}, expected {wanted}'
  others = {0: '', 1: '; 1 more array differs'}.get(len(differences) - 1, f'; {len(differences) - 1} more differ')
  return (f'The checkpoint {directory} was written by a different model: its arrays do not match {expected} '
          f'({first}{others}). {advice}')


def restore_for_inference(workdir: str, abstract_state, which: str = 'best'):
  """The state saved in `workdir`.

  Args:
    workdir: a training workdir.
    abstract_state: the train state to restore into (e.g. abstract_like of a freshly built one).
    which: 'best' (falls back to the latest when no best exists), 'latest', 'averaged' (written by
      write_checkpoint(workdir/averaged, ...)), or another directory name under workdir.

  Raises:
    FileNotFoundError: no checkpoint there; the message names the command that makes one.
    ValueError: the checkpoint does not fit `abstract_state` (written by another model config).
  """
  for name in ((which, 'checkpoints') if which == 'best' else (_DIRECTORY_OF.get(which, which),)):
    directory = os.path.join(workdir, name)
    if os.path.isdir(directory):
      manager = _read_only_manager(directory)
      step = manager.latest_step()
      if step is not None:
        return _restore(manager, step, abstract_state)[0]
  if which == AVERAGED:
    raise FileNotFoundError(f'No averaged checkpoint in {workdir}. Make one with '
                            f'`python -m experiments.average_checkpoints --workdir={workdir}`.')
  raise FileNotFoundError(f'No checkpoint in {workdir} (looked in {which!r}). Train first with '
                          f'`python -m experiments.train --config=... --workdir={workdir}`.')


class WarmStart(NamedTuple):
  """Parameters initialised from another run: the merged tree and the '/'-joined names of what came from where."""
  params: Any
  loaded: list[str]       # copied from the checkpoint
  fresh: list[str]        # in this model only: kept at their initial values
  unused: list[str]       # in the checkpoint only: not used


def warm_start_params(params, workdir: str, which: str = 'best') -> WarmStart:
  """`params` with every leaf that the checkpoint of run `workdir` also holds (same path) replaced by the saved value.

  For continuing a trained model as a related one: e.g. a pointer-generator trained without coverage, continued with
  the coverage scorer (its extra w_c and b start fresh) and the coverage loss, as See et al. (2017) do. Only
  parameters are taken; the optimiser state and the step start anew.

  Args:
    params: the new model's initial parameters (a nested dict of arrays).
    workdir: a training workdir; which: its checkpoint, as in `restore_for_inference` ('best', 'latest', ...).

  Raises:
    FileNotFoundError: no checkpoint there.
    ValueError: a parameter both trees hold has different shapes in them (named with both shapes).
  """
  for name in ((which, 'checkpoints') if which == 'best' else (_DIRECTORY_OF.get(which, which),)):
    directory = os.path.join(workdir, name)
    manager = _read_only_manager(directory) if os.path.isdir(directory) else None
    step = manager.latest_step() if manager is not None else None
    if step is not None:
      break
  else:
    raise FileNotFoundError(f'config.train.init_from={workdir!r}: no checkpoint there (looked in {which!r}). It must '
                            'be the --workdir of a finished or interrupted training run.')
  restored = _read_as_saved(manager, step, _saved_metadata(manager, step))['state']
  old = traverse_util.flatten_dict(jax.device_get(_params(restored)), sep='/')
  new = traverse_util.flatten_dict(params, sep='/')
  mismatched = [(k, np.shape(old[k]), np.shape(v)) for k, v in new.items() if k in old and np.shape(old[k]) != np.shape(v)]
  if mismatched:
    key, saved_shape, shape = mismatched[0]
    raise ValueError(f'config.train.init_from={workdir!r}: parameter {key} is {saved_shape} in {directory}/{step} but '
                     f'{shape} in this model ({len(mismatched)} such); continue only a model of the same sizes.')
  merged = {k: (np.asarray(old[k]).astype(np.asarray(v).dtype) if k in old else v) for k, v in new.items()}
  return WarmStart(traverse_util.unflatten_dict(merged, sep='/'), sorted(k for k in new if k in old),
                   sorted(k for k in new if k not in old), sorted(k for k in old if k not in new))


class AveragedCheckpoint(NamedTuple):
  """The newest of the averaged checkpoints with the mean parameters, its data-iterator state, the steps averaged."""
  state: Any
  data_state: dict
  steps: list[int]


def average_checkpoints(workdir: str, last: int, abstract_state=None) -> AveragedCheckpoint:
  """The newest checkpoint of workdir/checkpoints with each parameter the mean over the last `last` checkpoints.

  Each params leaf is the arithmetic mean of its `last` saved values, summed in float32 and cast back to the
  leaf's dtype; everything else (step, optimiser state, PRNG key, data state) is the newest checkpoint's.

  Args:
    workdir: a training workdir.
    last: how many of the newest checkpoints to average (1 gives the newest unchanged).
    abstract_state: the train state to restore into (e.g. abstract_like of a built one); None restores the newest
      checkpoint's tree as saved (nested dicts and lists, 'params' at the top), on the first local device.

  Returns:
    AveragedCheckpoint(state, data_state, steps averaged in ascending order); save it with write_checkpoint.

  Raises:
    FileNotFoundError: workdir/checkpoints holds no checkpoint.
    ValueError: last < 1; fewer than `last` checkpoints kept; a checkpoint that does not fit the state.
  """
  if last < 1:
    raise ValueError(f'The number of checkpoints to average must be >= 1; got {last}.')
  directory = os.path.join(workdir, 'checkpoints')
  manager = _read_only_manager(directory) if os.path.isdir(directory) else None
  kept = sorted(manager.all_steps()) if manager is not None else []
  if not kept:
    raise FileNotFoundError(f'No checkpoint in {directory} to average. Train first with '
                            f'`python -m experiments.train --config=... --workdir={workdir}`.')
  if len(kept) < last:
    raise ValueError(f'Cannot average the last {last} checkpoints: {directory} holds {len(kept)} (steps '
                     f'{", ".join(map(str, kept))}). config.train.keep_checkpoints sets how many a run keeps.')
  chosen = kept[-last:]
  newest = chosen[-1]
  target = abstract_state if abstract_state is not None else _abstract_from_metadata(_saved_metadata(manager,
                                                                                                      newest))
  expected = (f'the newest checkpoint (step {newest})', 'Average only checkpoints of one model (fewer of them).')
  state, data_state = _restore(manager, newest, target, expected)
  params = _params(state)
  total = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), jax.device_get(params))
  for step in chosen[:-1]:
    older = jax.device_get(_restored_params(manager, step, _params(target), expected))
    total = jax.tree.map(lambda acc, leaf: acc + np.asarray(leaf, np.float32), total, older)
  mean = jax.tree.map(lambda acc, leaf: jax.device_put((acc / np.float32(last)).astype(leaf.dtype), leaf.sharding),
                      total, params)
  return AveragedCheckpoint(_with_params(state, mean), data_state, chosen)


def _restored_params(manager, step, abstract_params, expected: tuple[str, str]):
  """The parameters saved at `step`, checked against abstract_params only: the rest of that checkpoint (its
  optimizer state, which may have another layout, e.g. from before packed_optimizer) is not compared."""
  saved_tree = _saved_metadata(manager, step)
  if saved_tree is not None:
    differences = _differences({'params': _params(saved_tree)}, {'params': abstract_params})
    if differences:
      raise ValueError(_mismatch_message(os.path.join(str(manager.directory), str(step)), differences, *expected))
  return _params(_read_as_saved(manager, step, saved_tree)['state'])


def _abstract_from_metadata(saved_tree):
  """ShapeDtypeStructs of the saved tree on the first local device (whatever topology it was saved from)."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), saved_tree)


def _params(state):
  return state['params'] if isinstance(state, dict) else state.params


def _with_params(state, params):
  return {**state, 'params': params} if isinstance(state, dict) else state.replace(params=params)


def write_checkpoint(directory: str, step: int, state, data_state: dict[str, Any]) -> str:
  """Saves (state, data_state) as the only checkpoint in directory, directory/<step>/{state, data}, replacing any
  there, and waits until it is written; returns its path. restore_for_inference(workdir, ..., name) reads
  workdir/<name>."""
  manager = _manager(directory, keep=1)
  for old in manager.all_steps():
    manager.delete(old)
  manager.save(step, args=_save_args(state, data_state), force=True)
  manager.wait_until_finished()
  manager.close()
  return os.path.join(os.path.abspath(directory), str(step))


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`, for restoring into the same placement."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
