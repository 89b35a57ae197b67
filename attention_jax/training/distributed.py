"""Multi-process start-up: `jax.distributed.initialize` from the config or the environment.

Set config.distributed.coordinator_address ('host:port'), num_processes and process_id, or the environment
variables ATTENTION_JAX_COORDINATOR, ATTENTION_JAX_NUM_PROCESSES, ATTENTION_JAX_PROCESS_ID. On Cloud TPU pods
set config.distributed.auto = True to let JAX discover them. With none of these, the run is single-process.
"""

from __future__ import annotations

import os

import jax

_initialized = False


def initialize_from_config(config) -> None:
  """Calls jax.distributed.initialize once if the config or environment asks for several processes."""
  global _initialized
  if _initialized:
    return
  settings = config.get('distributed') if hasattr(config, 'get') else None
  address = (settings.coordinator_address if settings else '') or os.environ.get('ATTENTION_JAX_COORDINATOR', '')
  num = int((settings.num_processes if settings else 0) or os.environ.get('ATTENTION_JAX_NUM_PROCESSES', 0) or 0)
  pid = (settings.process_id if settings and settings.process_id >= 0 else None)
  if pid is None and 'ATTENTION_JAX_PROCESS_ID' in os.environ:
    pid = int(os.environ['ATTENTION_JAX_PROCESS_ID'])
  if settings is not None and settings.get('auto', False):
    jax.distributed.initialize()
  elif address and num > 1:
    if pid is None:
      raise ValueError('Multi-process training needs the process id: set config.distributed.process_id or '
                       'ATTENTION_JAX_PROCESS_ID.')
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  else:
    return
  _initialized = True
