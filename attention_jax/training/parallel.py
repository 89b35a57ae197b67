"""Running the pure steps on one device or many: 'sharded' (default), 'pmap' or 'single'.

  sharded  jit with NamedSharding over a 1-D 'data' mesh of every device (all processes): parameters and
           optimiser state replicated, batches split along the batch axis. XLA inserts the collectives;
           the step sees the global batch, so its numbers equal the single-device step's.
  pmap     jax.pmap over the local devices with axis 'batch'; the step psums gradients and counts
           (see steps.train_step). State is replicated with a leading device axis.
  single   plain jit on the default device.

With `vmap_seeds` (a state whose leaves carry a leading seed axis K, every seed stepping on the same batch),
'sharded' uses a 2-D mesh ('seed', 'data') of gcd(K, devices) x the rest: each device holds the states of its
seeds and its slice of the shared batch, so K seeds on K devices train with no communication, and 3 seeds on
the 8 cores of a TPU split every batch 8 ways.

Every mode takes the PER-PROCESS batch as numpy arrays (`batch_size // process_count` rows) and
returns host-fetchable metrics without a device axis.
"""

from __future__ import annotations

import functools
import math

import flax.jax_utils
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from attention_jax.training import steps


PARALLEL_MODES = ('sharded', 'pmap', 'single')
PMAP_AXIS = 'batch'


def check_mode(mode: str) -> None:
  if mode not in PARALLEL_MODES:
    raise ValueError(f'Unknown parallel mode {mode!r}. Valid modes: {", ".join(PARALLEL_MODES)}.')


def check_batch_size(mode: str, global_batch_size: int, field: str = 'train.batch_size') -> None:
  """The global batch (`field` names it in the error) must split evenly over processes and devices."""
  check_mode(mode)
  devices = {'sharded': jax.device_count(), 'pmap': jax.device_count(), 'single': jax.process_count()}[mode]
  if global_batch_size % devices:
    unit = 'devices' if mode != 'single' else 'processes'
    raise ValueError(f'{field}={global_batch_size} is not divisible by the {devices} {unit} used by '
                     f'parallel={mode!r}; use a multiple of {devices}.')


def make_mesh() -> Mesh:
  """A 1-D mesh named 'data' over every device of every process."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def make_seed_mesh(seed_count: int) -> Mesh:
  """A 2-D mesh ('seed', 'data') over every device: gcd(seed_count, devices) rows of seeds, the rest for data."""
  devices = np.asarray(jax.devices())
  seed_rows = math.gcd(seed_count, devices.size)
  return Mesh(devices.reshape(seed_rows, devices.size // seed_rows), ('seed', 'data'))


class Runner:
  """Holds the compiled steps and the placement rules of one parallel mode.

  Args:
    mode: 'sharded' | 'pmap' | 'single'.
    train_step: (state, batch, *, axis_name=None) -> (state, metric sums), e.g.
      functools.partial(steps.train_step, loss_fn=...).
    eval_step: (state, batch, *, axis_name=None) -> (metric sums, per-example outputs [B, ...]), or None.
    vmap_seeds: the state has a leading seed axis (seeds.init_seed_states); every seed steps on the same batch
      in one compiled program, and metrics keep the seed axis.
  """

  def __init__(self, mode: str, train_step, eval_step=None, *, vmap_seeds: bool = False):
    check_mode(mode)
    self.mode = mode
    self.vmap_seeds = vmap_seeds
    if vmap_seeds:
      train_step = _over_seeds(train_step)
      eval_step = _over_seeds(eval_step) if eval_step is not None else None
    if mode == 'pmap':
      self._train = jax.pmap(functools.partial(train_step, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS,
                             donate_argnums=0)
      self._eval = (jax.pmap(functools.partial(eval_step, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS)
                    if eval_step is not None else None)
    else:
      if mode == 'sharded':
        # With seeds the mesh depends on the number of seeds, known when the first state is placed.
        self._use_mesh(make_mesh() if not vmap_seeds else None)
      self._train = jax.jit(train_step, donate_argnums=0)
      self._eval = jax.jit(eval_step) if eval_step is not None else None

  # ---- placement ----------------------------------------------------------------------------------------

  def _use_mesh(self, mesh: Mesh | None) -> None:
    self.mesh = mesh
    if mesh is not None:
      state_spec = PartitionSpec('seed') if self.vmap_seeds else PartitionSpec()
      self._state_sharding = NamedSharding(mesh, state_spec)
      self._batch_sharding = NamedSharding(mesh, PartitionSpec('data'))

  def put_state(self, state: steps.TrainState) -> steps.TrainState:
    """A host/single-device state -> this mode's placement (replicated; with seeds, split along the seed axis)."""
    if self.mode == 'sharded':
      if self.mesh is None:
        self._use_mesh(make_seed_mesh(int(jax.tree.leaves(state)[0].shape[0])))
      return jax.device_put(state, self._state_sharding)
    if self.mode == 'pmap':
      return flax.jax_utils.replicate(state)
    return jax.device_put(state)

  def get_state(self, state: steps.TrainState) -> steps.TrainState:
    """The state without a device axis (for checkpointing and decoding)."""
    if self.mode == 'pmap':
      # Host numpy copies: pmap's per-device arrays are process-local, which orbax cannot save multi-host.
      return jax.device_get(flax.jax_utils.unreplicate(state))
    return state

  def put_batch(self, batch: dict[str, np.ndarray]) -> dict:
    """This process's numpy batch -> device arrays of the global batch."""
    if self.mode == 'sharded':
      if self.mesh is None:
        raise ValueError('A seed-stacked runner places its first state (put_state) before any batch.')
      return {k: jax.make_array_from_process_local_data(self._batch_sharding, v) for k, v in batch.items()}
    if self.mode == 'pmap':
      n = jax.local_device_count()
      return {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in batch.items()}
    return jax.device_put(batch)

  # ---- steps --------------------------------------------------------------------------------------------

  def train_step(self, state, batch: dict[str, np.ndarray]):
    """-> (state, metrics as device arrays without a device axis)."""
    state, metrics = self._train(state, self.put_batch(batch))
    if self.mode == 'pmap':
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return state, metrics

  def eval_step(self, state, batch: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """-> (metric sums on host, this process's per-example outputs [B_local, ...] on host, e.g. attention)."""
    metrics, outputs = self._eval(state, self.put_batch(batch))
    if self.mode == 'pmap':
      metrics = jax.tree.map(lambda x: x[0], metrics)
      outputs = np.asarray(outputs).reshape(-1, *outputs.shape[2:])
    elif self.mode == 'sharded':
      outputs = np.concatenate([np.asarray(s.data) for s in sorted(
          outputs.addressable_shards, key=lambda s: s.index[0].start or 0)], axis=0) \
          if jax.process_count() > 1 else np.asarray(outputs)
    return jax.device_get(metrics), np.asarray(outputs)


def _over_seeds(step):
  """step vmapped over the leading seed axis of the state, the batch shared: (state_K, batch) -> (state_K, out_K)."""

  def over_seeds(state, batch, **kwargs):
    return jax.vmap(lambda one_state: step(one_state, batch, **kwargs))(state)
  return over_seeds
