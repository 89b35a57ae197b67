"""Pure training and evaluation steps for any model: the loss is injected, the step knows no batch keys.

    state = create_train_state(model, optimizer, seed, *example_inputs)
    state, metrics = train_step(state, batch, loss_fn=loss_fn)
    metrics, outputs = eval_step(state, batch, eval_fn=eval_fn)

A loss function is `loss_fn(params, batch, rng, *, train) -> (loss_sum [], denominator [], metric_sums)`:
a sum over the batch's units (target tokens, examples), how many units that sum covers, and metric sums
(`loss_sum`, `token_count`, ...). The update uses the gradient of the GLOBAL mean, sum(loss_sum) /
sum(denominator) over every device, so it is the same whatever the number of devices and however unevenly
the units fall on them. An evaluation function is `eval_fn(params, batch) -> (metric_sums, outputs)`.

Metrics are sums plus denominators so they add up across steps and devices; divide on the host. A step whose
loss or gradient is not finite leaves the state untouched and reports `nonfinite_step` = its step number
(else NO_NONFINITE_STEP), so the host can stop and name it.

Parallel execution (see parallel.py): under plain/sharded jit the step sees the global batch. Under
`jax.pmap` pass `axis_name`: gradients, denominators and metric sums are psum-med before dividing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from attention_jax.training import packed_optimizer

Array = jax.Array
LossFn = Callable[..., tuple[Array, Array, dict[str, Array]]]
EvalFn = Callable[..., tuple[dict[str, Array], Any]]
NO_NONFINITE_STEP = 2 ** 31 - 1
SCHEDULES = ('constant', 'rsqrt')
OPTIMIZERS = ('adamw', 'adam')


class TrainState(train_state.TrainState):
  """Flax TrainState plus the run's base PRNG key (raw key data, uint32 [2]); the step folds it in."""
  rng: Array


def make_schedule(train_config) -> optax.Schedule:
  """Linear warm-up to train_config.learning_rate, then constant or inverse square root."""
  warmup = int(train_config.warmup_steps)
  peak = float(train_config.learning_rate)
  if train_config.schedule == 'constant':
    if not warmup:
      return optax.constant_schedule(peak)
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])
  if train_config.schedule == 'rsqrt':
    def schedule(step):
      step = jnp.maximum(step.astype(jnp.float32), 1.0)
      return peak * jnp.minimum(step / max(warmup, 1), jnp.sqrt(max(warmup, 1) / step))
    return schedule
  raise ValueError(f'Unknown schedule {train_config.schedule!r}. Valid schedules: {", ".join(SCHEDULES)}.')


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Global-norm clipping (if grad_clip_norm > 0), then `adamw` (b2 0.98, eps 1e-9, as Vaswani et al.) or plain
  `adam` (Kingma & Ba's defaults), on the schedule of make_schedule; small parameter leaves packed into one vector
  (`packed_optimizer.pack_small_leaves`: the update compiles once for all of them, not once per leaf shape)."""
  optimizer = train_config.get('optimizer', 'adamw')
  schedule = make_schedule(train_config)
  chain = []
  if train_config.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(float(train_config.grad_clip_norm)))
  if optimizer == 'adamw':
    chain.append(optax.adamw(schedule, b1=0.9, b2=0.98, eps=1e-9, weight_decay=float(train_config.weight_decay)))
  elif optimizer == 'adam':
    chain.append(optax.adam(schedule))
  else:
    raise ValueError(f'Unknown optimizer {optimizer!r}. Valid optimizers: {", ".join(OPTIMIZERS)}.')
  return packed_optimizer.pack_small_leaves(optax.chain(*chain))


# XLA options for compiling the initialisation on CPU. It runs once per process, so LLVM's optimisation level 1
# (XLA's default is 3) costs nothing that matters at run time and takes a fifth off the default config's
# compilation, most of which is the ~50 random draws, each a rolled Threefry loop (BENCHMARKS.md section 4); the
# values are bit-identical (tests/training/test_steps.py checks it).
CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 1}


def _init(model: nn.Module, key: Array, *inputs: Array) -> tuple[Any, Array]:
  """(params, run key data uint32 [2]) of `model` from one PRNG key: one half initialises, the other is the run's."""
  init_rng, run_rng = jax.random.split(key)
  params = model.init({'params': init_rng, 'dropout': init_rng}, *inputs)['params']
  return params, jax.random.key_data(run_rng)


def _state(optimizer: optax.GradientTransformation, params: Any, rng: Array) -> TrainState:
  """The TrainState of `params` (a Flax parameter tree) and the run key data (uint32 [2]): step 0 and the
  optimizer's initial state; apply_fn is left None for the caller to set (it is not part of the program)."""
  return TrainState.create(apply_fn=None, params=params, tx=optimizer, rng=rng)


@functools.cache
def _jitted_init(compiler_options: tuple[tuple[str, Any], ...]) -> Callable[..., tuple[Any, Array]]:
  """_init jitted with `compiler_options` and the model static: one compilation per (model, input shapes), whatever
  the seed. Equal models (Flax modules compare by their fields) share it: its outputs are arrays only."""
  return jax.jit(_init, static_argnums=0, compiler_options=dict(compiler_options) or None)


# Keyed on the optimizer object (optax's transformations compare by identity): seeds sharing one reuse it.
_jitted_state = jax.jit(_state, static_argnums=0, donate_argnums=(1, 2))


def _hashable(value: Any) -> bool:
  """Whether jit can take `value` as a static argument."""
  try:
    hash(value)
  except TypeError:
    return False
  return True


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation, seed: int,
                       *example_inputs: Array) -> TrainState:
  """Initialises `model` from `seed` for inputs shaped like `example_inputs` (e.g. source [B, S], target_in [B, T]).

  The seed's key is split in two: one initialises the parameters, the other is the run's base key that every
  step folds its step number into (dropout).

  The initialisation is one compiled program (run eagerly, model.init would dispatch and compile each of its
  ~100 small ops separately) that takes the seed as an argument, so further seeds of the same model and input
  shapes reuse it (training/seeds.py initialises K seeds with one compilation); on CPU, called outside any
  trace, it is compiled with CPU_INIT_COMPILER_OPTIONS. The optimizer's state (zeros and counters) comes from a
  second, small program, reused for the same optimizer object. A model or optimizer with an unhashable attribute
  (jit cannot take it as a static argument) gets programs compiled for the call.
  """
  key = jax.random.key(seed)
  # Compiler options are for top-level programs only: none under an enclosing trace (jax.eval_shape, jit).
  on_cpu = not isinstance(key, jax.core.Tracer) and all(device.platform == 'cpu' for device in key.devices())
  options = CPU_INIT_COMPILER_OPTIONS if on_cpu else {}
  if _hashable(model):
    params, run_key_data = _jitted_init(tuple(sorted(options.items())))(model, key, *example_inputs)
  else:
    init = jax.jit(functools.partial(_init, model), compiler_options=options or None)
    params, run_key_data = init(key, *example_inputs)
  if _hashable(optimizer):
    state = _jitted_state(optimizer, params, run_key_data)
  else:
    state = jax.jit(functools.partial(_state, optimizer), donate_argnums=(0, 1))(params, run_key_data)
  return state.replace(apply_fn=model.apply)


def apply_gradients_if_finite(state: train_state.TrainState, grads: Any,
                              loss: Array) -> tuple[train_state.TrainState, Array, Array]:
  """The optimiser update, applied only when `loss` (a scalar) and the gradients' global norm are finite.

  A non-finite step must not corrupt the state: the old one is kept and the host stops the run.

  Returns:
    (new state, grad_norm [] float32, nonfinite_step [] int32: state.step if the update was skipped, else
    NO_NONFINITE_STEP).
  """
  # Over make_optimizer's packing: one reduction for the small leaves, not one per leaf shape.
  grad_norm = packed_optimizer.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = state.apply_gradients(grads=grads)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
  return new_state, grad_norm, jnp.where(finite, NO_NONFINITE_STEP, state.step).astype(jnp.int32)


def step_rng(state: TrainState, axis_name: str | None = None) -> Array:
  """The step's dropout key: the run key folded with the step (and the device index under pmap)."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  return rng


def train_step(state: TrainState, batch: dict, *, loss_fn: LossFn,
               axis_name: str | None = None) -> tuple[TrainState, dict[str, Array]]:
  """One optimiser step on `batch` with the gradient of sum(loss_sum) / sum(denominator).

  Returns:
    (new state, metrics): loss_fn's metric sums (psum-med under pmap), plus 'grad_norm' and 'nonfinite_step'.
  """
  rng = step_rng(state, axis_name)

  def loss_sum_fn(params):
    loss_sum, denominator, metrics = loss_fn(params, batch, rng, train=True)
    return loss_sum, (denominator, metrics)

  (loss_sum, (denominator, metrics)), grads = jax.value_and_grad(loss_sum_fn, has_aux=True)(state.params)
  if axis_name is not None:
    grads, denominator, metrics, loss_sum = jax.lax.psum((grads, denominator, metrics, loss_sum), axis_name)
  grads = jax.tree.map(lambda g: g / jnp.maximum(denominator, 1.0), grads)
  new_state, grad_norm, nonfinite_step = apply_gradients_if_finite(state, grads, loss_sum)
  return new_state, {**metrics, 'grad_norm': grad_norm, 'nonfinite_step': nonfinite_step}


def eval_step(state: TrainState, batch: dict, *, eval_fn: EvalFn,
              axis_name: str | None = None) -> tuple[dict[str, Array], Any]:
  """(metric sums, eval_fn's per-example outputs) without updating anything."""
  metrics, outputs = eval_fn(state.params, batch)
  if axis_name is not None:
    metrics = jax.lax.psum(metrics, axis_name)
  return metrics, outputs
