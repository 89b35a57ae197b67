"""Suite-wide set-up: one XLA compilation cache for the whole session, and XLA:CPU compiling for speed.

Many tests compile the same programs: the tiny config's train step in-process and again in every `experiments.*`
subprocess a CLI test starts. A persistent compilation cache in a fresh temporary directory (set before jax is
imported, inherited by the subprocesses, removed at the end) compiles each of them once per session. A
JAX_COMPILATION_CACHE_DIR already set in the environment is used as it is.

The suite's programs are tiny, so it spends much of its time compiling them, hundreds of them eagerly (every jnp
call outside jit is a program of its own). It therefore compiles them for speed (TEST_COMPILER_FLAGS): LLVM at
optimisation level 0 (XLA's default is 3) and XLA:CPU's elemental emitters instead of its fusion emitters. The
flags are appended to XLA_FLAGS (inherited by the subprocesses) unless XLA_FLAGS sets them already or names a flags
file, and only with a jaxlib in TEST_COMPILER_FLAGS_JAXLIB, since XLA aborts on a flag it does not know. Tests
about what a user's compilation gives (create_train_state's level-1 initialisation against XLA's default
compilation) compile both sides with XLA's defaults for these flags explicitly. To run the whole suite with XLA's
defaults, set ATTENTION_JAX_TEST_DEFAULT_COMPILER=1.

The suite's own process also gets the compiler flags that `cpu_runtime.configure()` gives every
`python -m experiments.*` process, so that a program compiled in-process is the one a CLI subprocess compiles: a
run trained in-process and one killed and resumed in subprocesses must end bit for bit the same, and with the
elemental emitters they do only when both compile with the same flags.
"""

import atexit
import os
import shutil
import tempfile

TEST_COMPILER_FLAGS = ('--xla_backend_optimization_level=0', '--xla_cpu_use_fusion_emitters=false')
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
cpu_runtime._add_compiler_flags()     # what configure() adds for the entry points
