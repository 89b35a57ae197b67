"""Entry points (`python -m experiments.<name>`): config file -> task -> the attention_jax library.

Importing this package, which every entry point does first, sets up how the process runs XLA:CPU steps
(`attention_jax.cpu_runtime.configure`: computations on the calling thread, from a heap that keeps what a step
frees); it must come before JAX's first computation. The entry points that compute call `start_jax` first thing
in main. ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1 leaves JAX, malloc and the threads on their defaults.
"""

from absl import logging

from attention_jax import cpu_runtime
from attention_jax.training import distributed

cpu_runtime.configure()


def start_jax(config=None) -> None:
  """Starts JAX for an entry point: `jax.distributed.initialize` first when the config (or the environment) asks
  for several processes, then XLA:CPU's worker threads each on its own core (`cpu_runtime.place_worker_threads`)."""
  distributed.initialize_from_config(config)
  logging.info('XLA:CPU worker threads: %s', cpu_runtime.place_worker_threads())
