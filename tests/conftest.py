"""Suite-wide set-up: one XLA compilation cache for the whole session.

Many tests compile the same programs: the tiny config's train step in-process and again in every `experiments.*`
subprocess a CLI test starts. A persistent compilation cache in a fresh temporary directory (set before jax is
imported, inherited by the subprocesses, removed at the end) compiles each of them once per session. A
JAX_COMPILATION_CACHE_DIR already set in the environment is used as it is.
"""

import atexit
import os
import shutil
import tempfile

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix='attention_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')    # tiny test programs count too
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
