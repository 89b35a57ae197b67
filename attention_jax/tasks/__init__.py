"""The task registry: one module per experiment, each with one contract.

    from attention_jax import tasks
    results = tasks.run(config, workdir)        # picks tasks.TASKS[config.experiment]

A task module (translation.py, sentiment.py, digit_strips.py, visual_attention.py, ner.py,
speech_recognition.py) defines
  NAME                                  the value of config.experiment that selects it
  default_config(...) -> ConfigDict     every field it reads, grouped by concern (data, model, train, eval,
                                        distributed); config files start from it
  validate_config(config)               ValueError naming the field and the valid values, before any data is built
  train_and_evaluate(config, workdir)   trains through training/loop.py (resume, parallel mode, checkpoints,
                                        metrics), evaluates, writes its outputs, returns the results
`run` starts the distributed set-up and validates before training, for every task alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from attention_jax.tasks import digit_strips
from attention_jax.tasks import ner
from attention_jax.tasks import sentiment
from attention_jax.tasks import speech_recognition
from attention_jax.tasks import translation
from attention_jax.tasks import visual_attention
from attention_jax.training import distributed


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What the entry point needs of a task (see the module docstring)."""
  name: str
  default_config: Callable
  validate_config: Callable
  train_and_evaluate: Callable


def _spec(module) -> TaskSpec:
  return TaskSpec(module.NAME, module.default_config, module.validate_config, module.train_and_evaluate)


TASKS = {spec.name: spec for spec in map(_spec, (translation, sentiment, digit_strips, visual_attention, ner,
                                                       speech_recognition))}


def get(name: str) -> TaskSpec:
  """The registered task `name`; ValueError listing the valid names otherwise."""
  if name not in TASKS:
    raise ValueError(f'Unknown config.experiment {name!r}. Valid experiments: {", ".join(TASKS)}.')
  return TASKS[name]


def run(config, workdir: str):
  """Runs config.experiment (default 'translation'): distributed set-up, validation, then training."""
  spec = get(config.get('experiment', translation.NAME))
  distributed.initialize_from_config(config)
  spec.validate_config(config)        # before building any data: a typo'd value fails in seconds
  return spec.train_and_evaluate(config, workdir)
