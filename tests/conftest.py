"""Suite-wide set-up: one XLA compilation cache for the whole session, and XLA:CPU compiling for speed.

Many tests compile the same programs: the tiny config's train step in-process and again in every `experiments.*`
subprocess a CLI test starts. A persistent compilation cache in a fresh temporary directory (set before jax is
imported, inherited by the subprocesses, removed at the end) compiles each of them once per session. A
JAX_COMPILATION_CACHE_DIR already set in the environment is used as it is.

The suite's programs are tiny, so it spends much of its time compiling them, hundreds of them eagerly (every jnp
call outside jit is a program of its own). It therefore has LLVM compile them at optimisation level 0
(TEST_COMPILER_FLAGS; XLA's default is 3): the same HLO programs and XLA:CPU emitters, and the default suite ran
14 min 26 s instead of 17 min 44 s on a 2-core AMD EPYC. The flag is appended to XLA_FLAGS (inherited by the
subprocesses) unless XLA_FLAGS sets it already or names a flags file, and only with a jaxlib in
TEST_COMPILER_FLAGS_JAXLIB, since XLA aborts on a flag it does not know. Tests about what a user's compilation
gives (create_train_state's level-1 initialisation against the default level) compile their references at the
default level explicitly. To run the whole suite with XLA's defaults, set ATTENTION_JAX_TEST_DEFAULT_COMPILER=1.

(XLA:CPU's elemental emitters, `--xla_cpu_use_fusion_emitters=false`, would halve the compile time, but they
change the last bits of results between programs that XLA's default emitters keep bit-identical, such as a
killed-and-resumed run and an uninterrupted one.)
"""

import atexit
import os
import shutil
import tempfile

TEST_COMPILER_FLAGS = ('--xla_backend_optimization_level=0',)
TEST_COMPILER_FLAGS_JAXLIB = ((0, 10, 2), (0, 11))      # [first, end): the versions known to accept them

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix='attention_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')    # tiny test programs count too
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')

from attention_jax import cpu_runtime    # noqa: E402  (after the cache's variables, which jax reads on import)


if os.environ.get('ATTENTION_JAX_TEST_DEFAULT_COMPILER', '') in ('', '0'):
  cpu_runtime.append_xla_flags(TEST_COMPILER_FLAGS, TEST_COMPILER_FLAGS_JAXLIB)
