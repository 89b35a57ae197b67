"""Several seeds of one model trained together in ONE compiled step (vmap over the seed axis).

    states = init_seed_states(model, optimizer, seeds=[0, 1, 2], source=..., target_in=...)   # leading axis K
    step = make_multi_seed_train_step(model, label_smoothing)                                  # jitted
    states, metrics = step(states, batch)          # every seed sees the same batch; metrics have a K axis

Seed k of the vmapped run follows exactly the trajectory of `steps.create_train_state(..., seed=k)` trained
with `steps.train_step` on the same batches: parameters and dropout both derive from the seed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from attention_jax.training import steps


def init_seed_states(model, optimizer, seeds: Sequence[int], source, target_in) -> steps.TrainState:
  """A TrainState whose every leaf has a leading seed axis K = len(seeds)."""
  init = functools.partial(steps.create_train_state, model, optimizer, source=source, target_in=target_in)
  return jax.jit(jax.vmap(lambda seed: init(seed=seed)))(jnp.asarray(list(seeds), jnp.int32))


def make_multi_seed_train_step(model, label_smoothing: float = 0.0):
  """jit(vmap(train_step)) over the seed axis of the state, with the batch shared by all seeds."""
  step = functools.partial(steps.train_step, model=model, label_smoothing=label_smoothing)
  return jax.jit(jax.vmap(step, in_axes=(0, None)), donate_argnums=0)


def select_seed(states: steps.TrainState, index: int) -> steps.TrainState:
  """The single-seed state at position `index` of the seed axis."""
  return jax.tree.map(lambda x: x[index], states)
