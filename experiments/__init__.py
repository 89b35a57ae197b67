"""Entry points (`python -m experiments.<name>`): config file -> task -> the attention_jax library.

Importing this package, which every entry point does first, sets up how the process runs XLA:CPU steps
(`attention_jax.cpu_runtime.configure`: computations on the calling thread, from a heap that keeps what a step
frees) and turns JAX's persistent compilation cache on (`attention_jax.compilation_cache.enable`: a second run of
a config loads its compiled steps instead of compiling them); both must come before JAX's first computation. The
entry points that compute call `start_jax` first thing in main. ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1 leaves JAX,
malloc and the threads on their defaults; ATTENTION_JAX_COMPILATION_CACHE=off runs without the cache.
"""

from absl import logging

from attention_jax import compilation_cache
from attention_jax import cpu_runtime
from attention_jax.training import distributed

cpu_runtime.configure()
COMPILATION_CACHE = compilation_cache.enable()


def start_jax(config=None) -> None:
  """Starts JAX for an entry point: `jax.distributed.initialize` first when the config (or the environment) asks
  for several processes, then XLA:CPU's worker threads each on its own core (`cpu_runtime.place_worker_threads`)."""
  distributed.initialize_from_config(config)
  logging.info('XLA:CPU worker threads: %s', cpu_runtime.place_worker_threads())
  logging.info('compilation cache: %s', COMPILATION_CACHE)
