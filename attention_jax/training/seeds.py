"""Several seeds of one model trained together in ONE compiled step (vmap over the seed axis).

    states = init_seed_states(model, optimizer, seeds=[0, 1, 2], source=..., target_in=...)   # leading axis K
    runner = parallel.Runner('single', train_step, vmap_seeds=True)      # every seed sees the same batch
    states, metrics = runner.train_step(states, batch)                       # metrics have a K axis

Seed k of the vmapped run follows exactly the trajectory of `steps.create_train_state(..., seed=k)` trained
with `steps.train_step` on the same batches: parameters and dropout both derive from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from attention_jax.training import steps


def init_seed_states(model, optimizer, seeds: Sequence[int], source, target_in) -> steps.TrainState:
  """A TrainState whose every leaf has a leading seed axis K = len(seeds): the states of
  steps.create_train_state(..., seed) stacked.

  Each seed is initialised by its own call and the results stacked (a vmapped initialisation of the larger
  BiLSTM models of configs/compare_messages_cpu.py hung on XLA:CPU with jax 0.10); the calls share one compiled
  initialisation, whose argument the seed is.
  """
  states = [steps.create_train_state(model, optimizer, int(seed), source, target_in) for seed in seeds]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def select_seed(states: steps.TrainState, index: int) -> steps.TrainState:
  """The single-seed state at position `index` of the seed axis."""
  return jax.tree.map(lambda x: x[index], states)
