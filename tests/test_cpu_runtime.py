"""cpu_runtime.configure: a jitted function whose temporary buffer is above glibc's 64 MiB thread-heap limit runs
without page faults once configured; on JAX's and glibc's defaults every call faults the whole buffer in again."""

import json
import os
import platform
import subprocess
import sys

import pytest

from attention_jax import cpu_runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'

# A fresh process: configure (argv[1] == '1') or not, then call a jitted function whose only temporary is an
# 80 MiB float32 array (an optimisation barrier keeps XLA from fusing it away). Prints configure's status, the
# dispatch setting, the compiled temporary size and the minor page faults of each of 16 calls after warm-up.
PROBE = r'''
import resource, sys
from attention_jax import cpu_runtime
status = cpu_runtime.configure() if sys.argv[1] == '1' else 'default'
import jax, jax.numpy as jnp
x = jnp.full((5 * 2 ** 22,), 0.5, jnp.float32)
f = jax.jit(lambda x: jnp.sum(jax.lax.optimization_barrier(jnp.sin(x)) * 2.0))
temp = f.lower(x).compile().memory_analysis().temp_size_in_bytes
for _ in range(10):     # the heap grows to its working size in the first calls
  f(x).block_until_ready()
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(status.replace(' ', '_'), int(jax.config.read('jax_cpu_enable_async_dispatch')), temp, *faults)
'''


def _run_fresh(script: str, argument: str, **environment) -> str:
  """The stdout of `script` run with `argument` in a fresh Python process (the opt-out variable and XLA_FLAGS unset
  unless given: importing `experiments` in this process, as other test modules do, configures it)."""
  env = {k: v for k, v in os.environ.items() if k not in (cpu_runtime.OPT_OUT_VARIABLE, 'XLA_FLAGS')}
  env.update(PYTHONPATH=ROOT, **environment)
  return subprocess.run([sys.executable, '-c', script, argument], capture_output=True, text=True, env=env, cwd=ROOT,
                        check=True, timeout=300).stdout


def _probe(configure: bool, **environment) -> tuple[str, bool, int, list[int]]:
  """(configure's status, async dispatch on?, temporary bytes, minor page faults of each call)."""
  out = _run_fresh(PROBE, str(int(configure)), **environment).split()
  return out[0], out[1] == '1', int(out[2]), [int(n) for n in out[3:]]


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_configured_process_reuses_a_large_temporary_buffer_without_page_faults():
  status, asynchronous, temp, faults = _probe(False)
  assert asynchronous and temp >= 80 * 2 ** 20
  # The worker thread's arena maps the > 64 MiB block afresh in every call: one fault per 4 KiB page of it.
  assert min(faults) > 0.9 * temp / 4096, faults
  status, asynchronous, temp, faults = _probe(True)
  assert status == 'configured' and not asynchronous
  # The block comes back from the main heap, already mapped. Now and then small allocations between calls take
  # part of the freed block, and the heap grows by a fresh one (observed: 0-2 of 16 calls, with other processes
  # busy); on the defaults every call faults it in.
  refaulted = [n for n in faults if n >= 100]
  assert len(refaulted) <= len(faults) // 4 and sorted(faults)[len(faults) // 2] < 100, faults


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_opt_out_leaves_jax_and_malloc_on_their_defaults():
  status, asynchronous, temp, faults = _probe(True, **{cpu_runtime.OPT_OUT_VARIABLE: '1'})
  assert status == 'disabled' and asynchronous
  assert min(faults) > 0.9 * temp / 4096, faults


@pytest.mark.parametrize('backend_started, status, updates', [
    (True, "nothing: JAX's CPU backend already started and this is not glibc", []),   # too late for dispatch
    (False, 'configured (dispatch only: not glibc)', [('jax_cpu_enable_async_dispatch', False)]),
])
def test_dispatch_is_set_only_before_the_backend_starts(monkeypatch, backend_started, status, updates):
  monkeypatch.delenv(cpu_runtime.OPT_OUT_VARIABLE, raising=False)
  monkeypatch.setattr(cpu_runtime, '_backend_started', lambda: backend_started)
  monkeypatch.setattr(cpu_runtime, '_glibc', lambda: None)                        # no malloc settings made
  made = []
  monkeypatch.setattr(cpu_runtime.jax.config, 'update', lambda *args: made.append(args))
  monkeypatch.setenv('XLA_FLAGS', '')          # restored afterwards
  monkeypatch.setattr(cpu_runtime, '_jaxlib_version', lambda: cpu_runtime.COMPILER_FLAGS_JAXLIB[0])
  assert cpu_runtime.configure() == status
  assert made == updates
  assert (os.environ['XLA_FLAGS'] == ' '.join(cpu_runtime.COMPILER_FLAGS)) == (not backend_started)


# A fresh process (optionally limited to the CPUs in argv[1] first): XLA:CPU's worker threads and their CPU sets
# before and after place_worker_threads, and the main thread's after.
PLACEMENT_PROBE = r'''
import json, os, sys
if sys.argv[1]:
  os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')})
from attention_jax import cpu_runtime
cpu_runtime.configure()
import jax, jax.numpy as jnp
(jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
workers = cpu_runtime.worker_threads()
before = [sorted(os.sched_getaffinity(t)) for t in workers]
status = cpu_runtime.place_worker_threads()
print(json.dumps({'status': status, 'before': before, 'after': [sorted(os.sched_getaffinity(t)) for t in workers],
                  'main': sorted(os.sched_getaffinity(0))}))
'''
LINUX_AFFINITY = platform.system() == 'Linux' and hasattr(os, 'sched_setaffinity')


def _placement(cpus: str = '', **environment) -> dict:
  return json.loads(_run_fresh(PLACEMENT_PROBE, cpus, **environment).strip().splitlines()[-1])


@pytest.mark.skipif(not LINUX_AFFINITY or len(os.sched_getaffinity(0)) < 2, reason='Linux with 2+ CPUs only')
def test_each_worker_thread_is_pinned_to_its_own_cpu_of_the_process_set():
  cpus = sorted(os.sched_getaffinity(0))[:2]
  result = _placement(','.join(map(str, cpus)))
  assert len(result['before']) == 2 and all(a == cpus for a in result['before'])     # XLA: one worker per CPU
  assert result['status'] == f'pinned 2 worker threads to CPUs {cpus}'
  assert result['after'] == [[cpus[0]], [cpus[1]]]
  assert result['main'] == cpus                                                      # the calling thread stays free


@pytest.mark.skipif(not LINUX_AFFINITY, reason='Linux only')
def test_placement_leaves_threads_alone_when_opted_out_or_on_one_cpu():
  result = _placement(**{cpu_runtime.OPT_OUT_VARIABLE: '1'})
  assert result['status'] == 'disabled' and result['after'] == result['before']
  one = sorted(os.sched_getaffinity(0))[0]
  result = _placement(str(one))
  assert result['status'] == 'nothing: the process may use one CPU' and result['after'] == result['before']


@pytest.mark.parametrize('before, after', [
    (None, '--xla_cpu_copy_insertion_use_region_analysis=true'),
    ('--xla_dump_to=/tmp/d', '--xla_dump_to=/tmp/d --xla_cpu_copy_insertion_use_region_analysis=true'),
    ('--xla_cpu_copy_insertion_use_region_analysis=false', '--xla_cpu_copy_insertion_use_region_analysis=false'),
])
def test_compiler_flags_are_appended_unless_the_user_set_them(monkeypatch, before, after):
  monkeypatch.setenv('XLA_FLAGS', before or '')          # restored (or removed again) afterwards
  if before is None:
    monkeypatch.delenv('XLA_FLAGS')
  monkeypatch.setattr(cpu_runtime, '_jaxlib_version', lambda: (0, 10, 2))
  cpu_runtime._add_compiler_flags()
  assert os.environ['XLA_FLAGS'] == after


@pytest.mark.parametrize('version', [(0, 10, 1), (0, 11, 0), (1, 0, 0)])
def test_compiler_flags_are_left_out_with_a_jaxlib_not_known_to_accept_them(monkeypatch, version):
  # XLA aborts the whole process on an XLA_FLAGS entry it does not know, so an unverified jaxlib gets none.
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/d')
  monkeypatch.setattr(cpu_runtime, '_jaxlib_version', lambda: version)
  cpu_runtime._add_compiler_flags()
  assert os.environ['XLA_FLAGS'] == '--xla_dump_to=/tmp/d'


@pytest.mark.parametrize('installed, parsed', [('0.10.2', (0, 10, 2)), ('0.10.2+cuda12', (0, 10, 2)),
                                               ('0.11.0.dev20260101', (0, 11, 0)), ('0.10.3rc1', (0, 10, 3))])
def test_the_installed_jaxlib_version_is_read(monkeypatch, installed, parsed):
  monkeypatch.setattr(cpu_runtime.importlib.metadata, 'version', lambda name: installed)
  assert cpu_runtime._jaxlib_version() == parsed


def test_a_flags_file_in_xla_flags_is_left_alone(monkeypatch):
  # XLA reads flags from the file a value not starting with '-' names; appending would corrupt the file name.
  monkeypatch.setenv('XLA_FLAGS', '/tmp/my.flags')
  monkeypatch.setattr(cpu_runtime, '_jaxlib_version', lambda: cpu_runtime.COMPILER_FLAGS_JAXLIB[0])
  cpu_runtime._add_compiler_flags()
  assert os.environ['XLA_FLAGS'] == '/tmp/my.flags'


def test_a_second_configure_adds_nothing(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setattr(cpu_runtime, '_jaxlib_version', lambda: cpu_runtime.COMPILER_FLAGS_JAXLIB[0])
  cpu_runtime._add_compiler_flags()
  cpu_runtime._add_compiler_flags()
  assert os.environ['XLA_FLAGS'] == ' '.join(cpu_runtime.COMPILER_FLAGS)


# A fresh process, configured (argv[1] == '1') or not: the gradient of a GRU recurrence (the library's custom VJP)
# and of a plain scan, compiled; prints XLA_FLAGS, the compiled program's copy instructions and the results' bytes.
COPY_PROBE = r'''
import hashlib, re, sys
from attention_jax import cpu_runtime
if sys.argv[1] == '1':
  cpu_runtime.configure()
import jax, jax.numpy as jnp, numpy as np
from attention_jax.models import recurrence
T, B, H = 6, 3, 8
rng = np.random.default_rng(0)
x_gates = jnp.asarray(rng.normal(size=(T, B, 3 * H)), jnp.float32)
kernel = jnp.asarray(rng.normal(size=(H, 3 * H)) * 0.3, jnp.float32)
valid = jnp.asarray(rng.random((T, B)) < 0.8)

def loss(x_gates, kernel):
  outputs, final = recurrence.recurrence('gru', x_gates, jnp.zeros((B, H)), kernel, jnp.zeros(3 * H), valid)
  ys = jax.lax.scan(lambda h, x: (jnp.tanh(h @ kernel[:, :H] + x[:, :H]), h), final, x_gates)[1]
  return jnp.sum(outputs ** 2) + jnp.sum(jnp.sin(ys))

compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x_gates, kernel).compile()
results = jax.tree.leaves(compiled(x_gates, kernel))
digest = hashlib.sha256(b''.join(np.asarray(r).tobytes() for r in results)).hexdigest()
flags = __import__('os').environ.get('XLA_FLAGS', '').replace(' ', ',') or '-'
print(len(re.findall(r'= \S+ copy\(', compiled.as_text())), digest, flags)
'''


VERIFIED_JAXLIB = cpu_runtime.COMPILER_FLAGS_JAXLIB[0] <= cpu_runtime._jaxlib_version() < \
    cpu_runtime.COMPILER_FLAGS_JAXLIB[1]


@pytest.mark.skipif(not VERIFIED_JAXLIB, reason='a jaxlib not verified with COMPILER_FLAGS')
def test_configured_compiles_loops_with_fewer_copies_and_the_same_results():
  default_copies, default_digest, default_flags = _run_fresh(COPY_PROBE, '0').split()
  copies, digest, flags = _run_fresh(COPY_PROBE, '1').split()
  flag = 'xla_cpu_copy_insertion_use_region_analysis'
  assert flag not in default_flags and f'{flag}=true' in flags
  assert int(copies) < int(default_copies)       # the loops' carries are no longer copied every step
  assert digest == default_digest                # bit for bit: only copies were removed
  opted_out = _run_fresh(COPY_PROBE, '1', **{cpu_runtime.OPT_OUT_VARIABLE: '1'}).split()
  assert opted_out == [default_copies, default_digest, default_flags]
