"""XLA:CPU's own matmuls against a custom call into an external sgemm (PyTorch's MKL, numpy's OpenBLAS): does a
faster small GEMM make the recurrences, and the throughput model's training step, faster?

    python -m benchmarks.external_gemm            # ~4 min: both tables, interleaved
    python -m benchmarks.external_gemm --quick    # fewer rounds

`external_gemm.cc` is an XLA FFI handler computing C = op(A) op(B) through a Fortran-interface sgemm whose address
it gets as an attribute; it is compiled here with the system C++ compiler against jaxlib's FFI headers (once, into
a cache folder). `matmul` wraps it with a VJP made of the same custom call; `routed_dot_general` sends every plain
2-D float32 `dot_general` traced inside it (Flax's Dense, `jnp.dot`, the matmuls that autodiff derives from them)
to the custom call, everything else to XLA.

Table 1: T = 30 steps of h <- tanh(tanh(h W1) W2), h [64, 256], W1 [256, N], W2 [N, 256] (N = 256: an attention
projection; N = 768: a GRU's fused gates; N = 4000: a vocabulary projection) in one jitted `fori_loop`, XLA's dot
against the custom call.
Table 2: the `benchmarks.throughput` model's training step (GRU encoder, Bahdanau decoder, additive attention,
batch 64 x 20 tokens, Adam) compiled three times: XLA's dots; every plain dot routed; only the per-step dots
(64 output rows: the recurrences') routed. Interleaved rounds of 5 steps.
Table 3: greedy decoding of one batch of that model (64 sentences, all 20 positions), XLA's dots against routed.
Each sgemm is measured in a fresh process (each library brings its own thread pool); the MKL pool gets
`--threads` threads (OMP_WAIT_POLICY etc. are taken from the environment and recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import time

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.external_gemm'
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'external_gemm.cc')
TARGET = 'external_gemm'
STEPS, BATCH, HIDDEN = 30, 64, 256
WIDTHS = (256, 768, 4000)
PAUSE_S = 0.5   # idle time before each contender's round, as in benchmarks.throughput
CALLS_PER_ROUND = 5


@functools.cache
def sgemm_choices() -> dict[str, tuple[str, str, bool]]:
  """The sgemms this machine has: name -> (shared library, Fortran symbol, 64-bit integers)."""
  choices = {}
  torch = importlib.util.find_spec('torch')   # located, not imported: only its MKL is loaded
  if torch is not None and torch.submodule_search_locations:
    path = os.path.join(list(torch.submodule_search_locations)[0], 'lib', 'libtorch_cpu.so')
    if os.path.exists(path):
      choices['mkl (pytorch)'] = (path, 'sgemm_', False)
  numpy_libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), 'numpy.libs')
  openblas = sorted(glob.glob(os.path.join(numpy_libs, 'libscipy_openblas64_*.so')))
  if openblas:
    choices['openblas (numpy)'] = (openblas[0], 'scipy_sgemm_64_', True)
  return choices


def build(cache_dir: str | None = None) -> str:
  """Compiles external_gemm.cc (once per source and jaxlib version) and returns the shared library's path."""
  import jax
  compiler = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')
  if compiler is None:
    raise RuntimeError('external_gemm needs a C++ compiler (g++ or $CXX) to build its custom call; none found')
  with open(SOURCE, 'rb') as f:
    key = hashlib.sha256(f.read() + str(harness.package_version('jaxlib')).encode()).hexdigest()[:16]
  cache_dir = cache_dir or os.path.join(os.path.expanduser('~'), '.cache', 'attention_jax', 'external_gemm')
  os.makedirs(cache_dir, exist_ok=True)
  library = os.path.join(cache_dir, f'libexternal_gemm_{key}.so')
  if not os.path.exists(library):
    partial = f'{library}.{os.getpid()}.tmp'
    subprocess.run([compiler, '-O2', '-shared', '-fPIC', '-std=c++17', '-w', f'-I{jax.ffi.include_dir()}', SOURCE,
                    '-o', partial], check=True, capture_output=True, text=True)
    os.replace(partial, library)   # atomic: a concurrent build never loads a half-written file
  return library


@functools.cache
def _register() -> None:
  import jax
  handler = ctypes.CDLL(build()).ExternalGemm
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(handler), platform='cpu')


@functools.cache
def load(name: str) -> int:
  """Registers the custom call (once) and returns the address of sgemm `name` (a key of `sgemm_choices`)."""
  choices = sgemm_choices()
  if name not in choices:
    raise ValueError(f'unknown sgemm {name!r}; this machine has {sorted(choices)}')
  _register()
  path, symbol, _ = choices[name]
  return ctypes.cast(getattr(ctypes.CDLL(path), symbol), ctypes.c_void_p).value


def _gemm(a, b, trans_a: bool, trans_b: bool, sgemm: str):
  import jax
  import jax.numpy as jnp
  m = a.shape[1] if trans_a else a.shape[0]
  n = b.shape[0] if trans_b else b.shape[1]
  call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((m, n), jnp.float32), vmap_method='sequential')
  return call(a, b, sgemm=np.int64(load(sgemm)), int64=np.int32(sgemm_choices()[sgemm][2]),
              trans_a=np.int32(trans_a), trans_b=np.int32(trans_b))


def _make_matmul():
  import jax

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
  def matmul(a, b, trans_a: bool, trans_b: bool, sgemm: str):
    """op(a) [M, K] @ op(b) [K, N] -> [M, N] float32 through `sgemm`; op transposes where trans_* is set."""
    return _gemm(a, b, trans_a, trans_b, sgemm)

  def forward(a, b, trans_a, trans_b, sgemm):
    return _gemm(a, b, trans_a, trans_b, sgemm), (a, b)

  def backward(trans_a, trans_b, sgemm, residuals, g):
    # C = op(A) op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g, each written straight into A's or B's layout.
    a, b = residuals
    da = _gemm(b, g, trans_b, True, sgemm) if trans_a else _gemm(g, b, False, not trans_b, sgemm)
    db = _gemm(g, a, True, trans_a, sgemm) if trans_b else _gemm(a, g, not trans_a, False, sgemm)
    return da, db

  matmul.defvjp(forward, backward)
  return matmul


matmul = _make_matmul()


@contextlib.contextmanager
def routed_dot_general(sgemm: str, max_rows: int | None = None):
  """While active, every traced `dot_general` of a float32 [..., K] or 2-D operand with a 2-D float32 [K, N] /
  [N, K] operand and no batch dimensions runs as the custom call (reshaped to 2-D); the rest stays with XLA.
  With `max_rows`, only products with at most that many output rows are routed (a recurrence's per-step
  matmuls have batch-size rows; the matmuls over all positions at once have T times more).
  (`jnp.einsum` binds its dot_general when JAX is imported, so einsums stay with XLA.)
  Only tracing sees it, and JAX caches traces (`jnp.dot` is a jitted helper), so the caches are
  cleared on entry and exit: compile inside the block ahead of time (`jax.jit(f).lower(...).compile()`) and call
  the compiled object afterwards; a plain `jax.jit` function would trace again, unrouted, after the block."""
  import jax
  import jax.numpy as jnp
  from jax._src.lax import lax as lax_internal
  original = lax_internal.dot_general
  load(sgemm)

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    lhs_contract, rhs_contract = tuple(lhs_contract), tuple(rhs_contract)
    plain = (not lhs_batch and not rhs_batch and rhs.ndim == 2 and lhs.ndim >= 2
             and len(lhs_contract) == 1 and len(rhs_contract) == 1
             and jnp.result_type(lhs) == jnp.float32 and jnp.result_type(rhs) == jnp.float32
             and preferred_element_type in (None, jnp.float32, np.float32)
             and (lhs_contract[0] == lhs.ndim - 1 or (lhs.ndim == 2 and lhs_contract[0] == 0)))
    rows = (int(np.prod(lhs.shape[:-1])) if lhs_contract[0] == lhs.ndim - 1 else lhs.shape[1]) if plain else 0
    if not plain or (max_rows is not None and rows > max_rows):
      return original(lhs, rhs, dimension_numbers, precision=precision,
                      preferred_element_type=preferred_element_type, **kwargs)
    trans_b = rhs_contract[0] == 1
    if lhs.ndim == 2:
      return matmul(lhs, rhs, lhs_contract[0] == 0, trans_b, sgemm)
    out = matmul(lhs.reshape(-1, lhs.shape[-1]), rhs, False, trans_b, sgemm)
    return out.reshape(*lhs.shape[:-1], out.shape[-1])

  public = jax.lax.dot_general
  jax.clear_caches()
  lax_internal.dot_general = jax.lax.dot_general = dot_general
  try:
    yield
  finally:
    lax_internal.dot_general, jax.lax.dot_general = original, public
    jax.clear_caches()


def _interleaved_rounds(contenders: dict, rounds: int) -> dict[str, list[float]]:
  """contenders: name -> a callable running one timed round and returning its per-call seconds."""
  times = {name: [] for name in contenders}
  for r in range(rounds):
    names = list(contenders)
    for name in names[r % len(names):] + names[:r % len(names)]:   # rotate who goes first
      time.sleep(PAUSE_S)
      times[name] += contenders[name]()
  return times


def _timed_round(call):
  """A round for `_interleaved_rounds`: CALLS_PER_ROUND calls of `call` (which must synchronise), each timed."""
  def round_() -> list[float]:
    seconds = []
    for _ in range(CALLS_PER_ROUND):
      start = time.perf_counter()
      call()
      seconds.append(time.perf_counter() - start)
    return seconds
  return round_


def measure(sgemm: str, rounds: int, threads: int) -> list[dict]:
  """The three tables' rows for one sgemm, in this process (set up as experiments/ sets up its processes)."""
  from attention_jax import cpu_runtime
  cpu_runtime.configure()
  import jax
  import jax.numpy as jnp
  load(sgemm)
  jax.block_until_ready(jnp.zeros(()))   # JAX started: its worker threads exist and can be placed
  cpu_runtime.place_worker_threads()
  if sgemm.startswith('mkl'):
    import torch
    torch.set_num_threads(threads)
  rng = np.random.default_rng(0)
  rows = []
  products = {'xla': jnp.matmul, sgemm: lambda a, b: matmul(a, b, False, False, sgemm)}
  for width in WIDTHS:
    h0 = jnp.asarray(rng.standard_normal((BATCH, HIDDEN)), jnp.float32)
    w1 = jnp.asarray(rng.standard_normal((HIDDEN, width)) * 0.05, jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((width, HIDDEN)) * 0.05, jnp.float32)
    steps = {name: (lambda h, mm=mm: jnp.tanh(mm(jnp.tanh(mm(h, w1)), w2))) for name, mm in products.items()}
    loops = {name: jax.jit(lambda h, step=step: jax.lax.fori_loop(0, STEPS, lambda _, h: step(h), h))
             for name, step in steps.items()}
    # One step agrees to rounding; 30 steps of the saturating recurrence amplify the summation-order difference.
    np.testing.assert_allclose(np.asarray(steps[sgemm](h0)), np.asarray(steps['xla'](h0)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(loops[sgemm](h0)), np.asarray(loops['xla'](h0)), atol=2e-2)
    times = _interleaved_rounds({name: _timed_round(lambda fn=fn: jax.block_until_ready(fn(h0)))
                                 for name, fn in loops.items()}, rounds)
    flops = STEPS * 2 * 2 * BATCH * HIDDEN * width
    for name, t in times.items():
      median_ms = float(np.median(t)) * 1e3
      rows.append({'table': 'loop', 'sgemm': sgemm, 'case': f'N={width}', 'matmul': name,
                   'median_ms': median_ms, 'gflop_per_s': flops / median_ms / 1e6})

  from benchmarks import throughput
  batches = throughput.make_batches(throughput.SPEC, 5)

  def compiled_trainer():   # the step compiled ahead of time: it keeps its dots whatever is traced later
    trainer = throughput.JaxTrainer(throughput.SPEC, threads)
    return trainer, trainer.compile(batches[0]).as_text()

  built = {'xla': compiled_trainer()}
  with routed_dot_general(sgemm):
    built[sgemm] = compiled_trainer()
  small = f'{sgemm}, per-step only'   # only products with batch-size rows: the recurrences' matmuls
  with routed_dot_general(sgemm, max_rows=throughput.SPEC['batch_size']):
    built[small] = compiled_trainer()
  trainers = {name: trainer for name, (trainer, _) in built.items()}
  hlo = {name: text for name, (_, text) in built.items()}
  marker = f'custom_call_target="{TARGET}"'
  if marker in hlo['xla'] or marker not in hlo[sgemm] or not 0 < hlo[small].count(marker) < hlo[sgemm].count(marker):
    raise AssertionError('the routed step must hold the custom calls and the XLA step none: '
                         f'{ {name: text.count(marker) for name, text in hlo.items()} }')
  losses = {name: trainer.step(batches[1]) for name, trainer in trainers.items()}
  if not all(np.isclose(losses['xla'], loss, rtol=1e-4) for loss in losses.values()):
    raise AssertionError(f'the routed step computes a different loss: {losses}')
  times = _interleaved_rounds({name: (lambda t=trainer: t.timed_steps(batches)[0])
                               for name, trainer in trainers.items()}, rounds)
  for name, t in times.items():
    rows.append({'table': 'train step', 'sgemm': sgemm, 'case': 'throughput model', 'matmul': name,
                 'median_ms': float(np.median(t)) * 1e3, 'gflop_per_s': None})

  # Greedy decoding of one batch (all 20 positions), the trained XLA parameters for both.
  from attention_jax import decoding
  model, params, source = trainers['xla'].model, trainers['xla'].state.params, batches[0]['source']
  length = throughput.SPEC['target_length']
  greedy = {'xla': decoding.greedy_decode.lower(model, params, source, max_length=length).compile()}
  with routed_dot_general(sgemm):
    greedy[sgemm] = decoding.greedy_decode.lower(model, params, source, max_length=length).compile()
  tokens = {name: np.asarray(fn(params, source)[0]) for name, fn in greedy.items()}
  agreement = float(np.mean(tokens['xla'] == tokens[sgemm]))
  times = _interleaved_rounds({name: _timed_round(lambda fn=fn: np.asarray(fn(params, source)[0]))
                               for name, fn in greedy.items()}, rounds)
  for name, t in times.items():
    rows.append({'table': 'greedy decoding', 'sgemm': sgemm, 'case': f'batch 64, {length} positions '
                 f'(tokens agree: {agreement:.3f})', 'matmul': name,
                 'median_ms': float(np.median(t)) * 1e3, 'gflop_per_s': None})
  return rows


def _in_fresh_process(sgemm: str, rounds: int, threads: int) -> list[dict]:
  return harness.run_worker(MODULE, ['--worker', sgemm, '--rounds', str(rounds), '--threads', str(threads)],
                            timeout=1200)


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/external_gemm.json')
  parser.add_argument('--rounds', type=int, default=None, help='interleaved rounds (default 8; --quick 2)')
  parser.add_argument('--threads', type=int, default=os.cpu_count(), help='MKL threads (PyTorch pool)')
  parser.add_argument('--sgemm', action='append', default=None,
                      help='which sgemm (repeatable; default: every one this machine has)')
  parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)   # one sgemm's tables, this process
  args = parser.parse_args(argv)
  rounds = args.rounds or (2 if args.quick else 8)
  if args.worker:
    harness.print_worker_result(measure(args.worker, rounds, args.threads))
    return {}
  load_before = harness.load_average()
  names = args.sgemm or list(sgemm_choices())
  unknown = sorted(set(names) - set(sgemm_choices()))
  if unknown:
    parser.error(f'unknown --sgemm {unknown}; this machine has {sorted(sgemm_choices())}')
  rows = [row for name in names for row in _in_fresh_process(name, rounds, args.threads)]
  for table in ('loop', 'train step', 'greedy decoding'):
    print(f'\n{table} (median, {rounds} interleaved rounds of {CALLS_PER_ROUND} calls)\n')
    print(harness.markdown_table([r for r in rows if r['table'] == table],
                                 ['sgemm', 'case', 'matmul', 'median_ms', 'gflop_per_s']))
  settings = {'threads': args.threads, 'rounds': rounds,
              **{k: os.environ[k] for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS') if k in os.environ}}
  return harness.write_results(MODULE, args.out, load_before, {'settings': settings, 'rows': rows},
                               extra_packages=('torch',))


if __name__ == '__main__':
  main()
