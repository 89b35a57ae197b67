"""make_task: from a data config (`config.data`) to a TranslationTask, through the dataset registry.

    from attention_jax import data
    task = data.make_task(data.default_data_config('date'))    # builds a synthetic task on first use (seconds)
    batches = task.train_iterator(batch_size=64, seed=0)        # batch format: attention_jax.data.translation_task

This module never imports models or jax.
"""

from __future__ import annotations

import os

from attention_jax.data import registry
from attention_jax.data import tokenizers
from attention_jax.data.translation_task import TranslationTask


def make_task(data_config, *, data_dir: str | None = None) -> TranslationTask:
  """Builds (synthetic tasks: on first use, seconds) or loads the dataset named by data_config.name.

  Args:
    data_config: a ConfigDict from default_data_config (possibly edited).
    data_dir: overrides data_config.data_dir.

  Raises:
    ValueError: unknown dataset name or tokenizer (the message lists the valid ones).
    FileNotFoundError: a real corpus that is not prepared; the message names the command that prepares it.
  """
  spec = registry.get(data_config.name, kind='translation')
  tokenizer = data_config.get('tokenizer', None) or spec.tokenizer
  tokenizers.check_kind(tokenizer)
  return spec.load(spec, data_config, os.path.expanduser(data_dir or data_config.data_dir), tokenizer)
