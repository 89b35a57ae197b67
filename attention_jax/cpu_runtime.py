"""How a process runs XLA:CPU steps: on the calling thread, from a heap that keeps what a step frees, compiled
with fewer loop copies, with XLA's worker threads one per core.

    from attention_jax import cpu_runtime
    cpu_runtime.configure()   # before the first JAX computation; every `python -m experiments.*` process does it
    ...                       # jax.distributed.initialize(...), if the run has several processes
    cpu_runtime.place_worker_threads()   # once JAX may start (experiments.start_jax does both)

Why. XLA:CPU gives every execution of a compiled function one temporary buffer for all its intermediates (78 MB
for the training step of `benchmarks.throughput`), allocated when the execution starts and freed when it ends.
By default JAX dispatches CPU executions asynchronously to a worker thread, and glibc serves a worker thread from
a per-thread arena whose heaps hold at most 64 MiB: a larger block is a fresh anonymous mmap that free unmaps
again, so every step page-faults its whole buffer back in (about 20,000 faults a step there). Two settings
remove that:

- `jax_cpu_enable_async_dispatch = False`: a computation runs on the thread that calls it (the Python thread,
  which allocates from glibc's main arena). Python then waits for each call, as it does anyway wherever it
  reads a result; multi-device (pmap, sharded) computations stay asynchronous.
- glibc `mallopt(M_MMAP_MAX, 0)` and `mallopt(M_TRIM_THRESHOLD, 2^31 - 1)`: the main arena serves large blocks
  from its heap and keeps freed memory there instead of returning it to Linux, so the next step reuses it.

Measured on 2 Sapphire Rapids cores (BENCHMARKS.md section 2, change 6): the throughput model's training step
124.1 -> 103.2 ms side by side (1.20x), a real training run 1.17-1.23x more steps/s, greedy and beam-4 decoding
4-8% faster; the resident size grows by about one temporary buffer. (Limiting glibc to one arena instead, so
that the worker threads allocate from the main heap too, removes the faults as well but makes the threads
contend for its lock: a 141 vs 121-126 ms step, and decoding 4-13% slower than with neither.)

Copies. XLA's copy insertion makes each while loop (every `lax.scan`: the recurrences, forward and backward) copy
carried buffers that it cannot prove unaliased, every iteration. With
`--xla_cpu_copy_insertion_use_region_analysis=true` XLA analyses the loop body region by region and drops most of
them: the throughput model's training step compiles with 50 instead of 136 copy instructions, computes the same
numbers bit for bit, and runs 1.08x faster (120.7 -> 111.4 ms side by side, BENCHMARKS.md section 2, change 11).
configure() appends it to XLA_FLAGS unless XLA_FLAGS already sets it or names a flags file, and only with a jaxlib
known to accept it (COMPILER_FLAGS_JAXLIB): XLA aborts the process on a flag it does not know. Extend the range
once `tests/test_cpu_runtime.py` passes on a newer jaxlib.

When. The dispatch setting and XLA_FLAGS are read when JAX creates its CPU client, at the first computation;
later calls change nothing there and say so. Only glibc systems (Linux) get the malloc settings; elsewhere only
the dispatch setting and the compiler flag are made. Setting the environment variable
ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1 leaves all three alone.

Worker threads. XLA:CPU runs the parallel parts of a computation on its own pool of worker threads, one per core
(Linux names them tf_XLAEigen), which sleep when idle. After an idle spell (a pause between decoding requests,
evaluation or checkpointing between training steps) Linux wakes them onto the same core, and a short computation
ends before the scheduler moves one away: the throughput model's greedy decoding of a batch took 66.2 ms after
0.5 s of idleness against 44.5 ms back to back, about its single-threaded time, with ~100 involuntary context
switches instead of ~1. `place_worker_threads()`, called by the entry points once JAX has started (after
`jax.distributed.initialize`), pins each worker to its own core of the process's CPU set: the first batch after
idleness then decodes as fast as the next (42.4 vs 41.5 ms, beam 4 151.2 vs 143.4 ms, where it was 163.6 vs
143.5), and the training step is unchanged (BENCHMARKS.md section 2, change 10). The same opt-out variable leaves
them alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import platform
import re
from collections.abc import Sequence

import jax

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_EVERYTHING = 2 ** 31 - 1      # M_TRIM_THRESHOLD: never give the heap's top back
OPT_OUT_VARIABLE = 'ATTENTION_JAX_DEFAULT_CPU_RUNTIME'
# The same malloc settings as glibc reads them from the environment at start-up (for processes that cannot call
# configure() first, e.g. another checkout's benchmark worker).
MALLOC_ENVIRONMENT = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(KEEP_EVERYTHING)}
# XLA compiler flags set by configure() (see the module docstring, "Copies"), and the jaxlib versions
# [first, end) known to accept them: XLA aborts the process on a flag in XLA_FLAGS that it does not know.
COMPILER_FLAGS = ('--xla_cpu_copy_insertion_use_region_analysis=true',)
COMPILER_FLAGS_JAXLIB = ((0, 10, 2), (0, 11))
WORKER_THREAD_NAME = 'tf_XLAEigen'     # XLA:CPU's intra-op pool threads, as /proc/self/task/*/comm names them


def _glibc() -> ctypes.CDLL | None:
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return None
  try:
    return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
  except OSError:
    return None


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):      # not exposed by this JAX version: assume the call is early enough
    return False


def configure() -> str:
  """Synchronous CPU dispatch, a heap that keeps freed memory and COMPILER_FLAGS (see the module docstring).
  Returns what was done: 'configured', 'configured (dispatch only: not glibc)', "malloc only: JAX's CPU backend
  already started", "nothing: ..." (started, and not glibc) or 'disabled' (ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1).

  Raises RuntimeError if glibc refuses a malloc setting (it does not for these values)."""
  if os.environ.get(OPT_OUT_VARIABLE, '') not in ('', '0'):
    return 'disabled'
  libc = _glibc()
  if libc is not None:
    for name, parameter, value in (('M_MMAP_MAX', M_MMAP_MAX, 0), ('M_TRIM_THRESHOLD', M_TRIM_THRESHOLD,
                                                                    KEEP_EVERYTHING)):
      if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
        raise RuntimeError(f'glibc mallopt({name}, {value}) failed')
  if _backend_started():
    return ("malloc only: JAX's CPU backend already started" if libc is not None
            else "nothing: JAX's CPU backend already started and this is not glibc")
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  _add_compiler_flags()
  return 'configured' if libc is not None else 'configured (dispatch only: not glibc)'


def _jaxlib_version() -> tuple[int, ...]:
  version = importlib.metadata.version('jaxlib')
  return tuple(int(part) for part in re.findall(r'\d+', version.split('+')[0])[:3])


def _add_compiler_flags() -> None:
  """Appends COMPILER_FLAGS to XLA_FLAGS as append_xla_flags does."""
  append_xla_flags(COMPILER_FLAGS, COMPILER_FLAGS_JAXLIB)


def append_xla_flags(new_flags: Sequence[str], jaxlib_versions: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
  """Appends `new_flags` ('--name=value' each) to XLA_FLAGS, which XLA reads when JAX's backends start: each unless
  XLA_FLAGS already sets it (the user's value wins), only with a jaxlib in `jaxlib_versions` ([first, end): XLA
  aborts the process on a flag it does not know), and not when XLA_FLAGS names a flags file (a value not starting
  with '-')."""
  first, end = jaxlib_versions
  try:
    if not first <= _jaxlib_version() < end:
      return
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return
  flags = os.environ.get('XLA_FLAGS', '')
  if flags.strip() and not flags.lstrip().startswith('-'):
    return        # XLA reads the flags from the file this names; appending would corrupt its name
  present = {flag.split('=', 1)[0] for flag in flags.split()}
  added = [flag for flag in new_flags if flag.split('=', 1)[0] not in present]
  if added:
    os.environ['XLA_FLAGS'] = ' '.join([flags, *added]).strip()


def worker_threads() -> list[int]:
  """The Linux thread ids of XLA:CPU's worker threads in this process (none before its CPU client exists, or off
  Linux)."""
  try:
    tids = os.listdir('/proc/self/task')
  except OSError:
    return []
  found = []
  for tid in tids:
    try:
      with open(f'/proc/self/task/{tid}/comm') as f:
        if f.read().strip() == WORKER_THREAD_NAME:
          found.append(int(tid))
    except OSError:       # the thread ended meanwhile
      continue
  return sorted(found)


def place_worker_threads() -> str:
  """Pins each of XLA:CPU's worker threads to its own core (see the module docstring); returns what was done:
  'pinned N worker threads to CPUs [...]', 'nothing: ...' (why) or 'disabled' (ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1).

  Starts JAX's backends if they have not started, so call it after `jax.distributed.initialize` (which must come
  first) and once the platform is chosen. Only a run whose default backend is the CPU is changed. The cores are
  those of the process's CPU set (`os.sched_getaffinity`, e.g. under `taskset`), one worker each in turn.
  """
  if os.environ.get(OPT_OUT_VARIABLE, '') not in ('', '0'):
    return 'disabled'
  if not hasattr(os, 'sched_setaffinity'):
    return 'nothing: this system has no per-thread CPU affinity'
  if jax.default_backend() != 'cpu':
    return f'nothing: the default backend is {jax.default_backend()}'
  cpus = sorted(os.sched_getaffinity(0))
  if len(cpus) < 2:
    return 'nothing: the process may use one CPU'
  workers = worker_threads()
  if not workers:
    return f'nothing: no {WORKER_THREAD_NAME} threads in this process'
  placed = []
  for i, tid in enumerate(workers):
    try:
      os.sched_setaffinity(tid, {cpus[i % len(cpus)]})
    except OSError:      # the thread ended meanwhile, or the system refuses: leave it free
      continue
    placed.append(cpus[i % len(cpus)])
  return f'pinned {len(placed)} worker threads to CPUs {placed}'
