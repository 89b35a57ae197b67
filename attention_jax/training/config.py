"""The config groups every task shares (`config.train`, `config.distributed`) with defaults, and their checks.

Each task module (attention_jax/tasks/) builds its full config from these plus its own `data`, `model` and
`eval` groups, and validates it with `validate_training_config` plus its own checks before any data is built.
"""

from __future__ import annotations

import os

import ml_collections

from attention_jax.training import parallel
from attention_jax.training.steps import OPTIMIZERS, SCHEDULES


def train_defaults() -> ml_collections.ConfigDict:
  """config.train: optimiser, schedule, budget, parallel mode, logging and checkpoint cadence."""
  train = ml_collections.ConfigDict()
  train.batch_size = 64           # global, over all devices and processes
  train.num_steps = 2000
  train.optimizer = 'adamw'       # adamw (b2 0.98, eps 1e-9) | adam (Kingma & Ba defaults)
  train.learning_rate = 3e-3
  train.schedule = 'constant'     # constant (after warm-up) | rsqrt
  train.warmup_steps = 100
  train.grad_clip_norm = 1.0      # 0 disables
  train.weight_decay = 0.0        # adamw only
  train.label_smoothing = 0.0
  train.parallel = 'sharded'      # sharded (jit + NamedSharding) | pmap | single
  train.log_every = 50
  train.eval_every = 500
  train.checkpoint_every = 500
  train.keep_checkpoints = 3
  train.prefetch_batches = 2      # batches the host builds ahead on a thread while the step computes; 0: none
  train.init_from = ''            # a run's workdir: a fresh run starts from its best checkpoint's parameters
                                  # wherever the models share them (optimiser and step start anew)
  return train


def distributed_defaults() -> ml_collections.ConfigDict:
  """config.distributed: multi-process start-up (see training/distributed.py)."""
  distributed = ml_collections.ConfigDict()
  distributed.coordinator_address = ''   # 'host:port' for multi-process runs (or env, see distributed.py)
  distributed.num_processes = 0
  distributed.process_id = -1
  distributed.auto = False               # True on Cloud TPU pods: let JAX find the processes
  return distributed


def check_integer_fields(config, fields) -> None:
  """fields: (group, name, minimum) triples; each config[group][name] must be an integer >= minimum."""
  for group, name, minimum in fields:
    value = config[group][name]
    if isinstance(value, bool) or int(value) != value or value < minimum:
      raise ValueError(f'config.{group}.{name}={value!r} must be an integer >= {minimum}.')


def validate_training_config(config) -> None:
  """Checks config.train (and config.eval.batch_size) before any data is built or compiled.

  Call after `jax.distributed.initialize` (the batch checks use the device and process counts).

  Raises:
    ValueError: naming the field, the bad value and the valid choices (or the numbers that do not divide).
  """
  train = config.train
  parallel.check_mode(train.parallel)
  if train.schedule not in SCHEDULES:
    raise ValueError(f'Unknown config.train.schedule {train.schedule!r}. Valid schedules: {", ".join(SCHEDULES)}.')
  if train.optimizer not in OPTIMIZERS:
    raise ValueError(f'Unknown config.train.optimizer {train.optimizer!r}. Valid optimizers: '
                     f'{", ".join(OPTIMIZERS)}.')
  check_integer_fields(config, (
      ('train', 'batch_size', 1), ('train', 'num_steps', 1), ('train', 'log_every', 1), ('train', 'eval_every', 1),
      ('train', 'checkpoint_every', 1), ('train', 'keep_checkpoints', 1), ('train', 'warmup_steps', 0),
      ('train', 'prefetch_batches', 0), ('eval', 'batch_size', 1)))
  if not 0.0 <= train.label_smoothing < 1.0:
    raise ValueError(f'config.train.label_smoothing={train.label_smoothing} must be in [0, 1).')
  if not train.learning_rate > 0.0:
    raise ValueError(f'config.train.learning_rate={train.learning_rate} must be positive.')
  if train.grad_clip_norm < 0.0:
    raise ValueError(f'config.train.grad_clip_norm={train.grad_clip_norm} must be >= 0 (0 disables clipping).')
  parallel.check_batch_size(train.parallel, int(train.batch_size))
  init_from = train.get('init_from', '')
  if init_from and not os.path.isdir(init_from):
    raise ValueError(f'config.train.init_from={init_from!r} is not a directory; it must be the --workdir of a '
                     "training run ('' starts from random parameters).")
