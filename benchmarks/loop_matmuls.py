"""Small matmuls inside XLA:CPU loops: does stepping from Python, splitting the batch into independent scans or the
concurrency-optimised scheduler make the recurrences' matmuls faster than one compiled loop? And does XLA:CPU run
a loop beside independent work at all?

    python -m benchmarks.loop_matmuls            # ~2-5 min: the three tables, interleaved, median of 15
    python -m benchmarks.loop_matmuls --quick    # 5 rounds

Table 1: T = 30 steps of h <- tanh(tanh(h W1) W2) with h [64, 256], W1 [256, N], W2 [N, 256] (N = 768, a GRU's
fused gates; N = 4000, a vocabulary projection), either one jitted `fori_loop` or T calls of a jitted step from
Python (how PyTorch runs a decoder). Table 2: a GRU-style scan over T = 30 steps, batch 64, H = 256, as one scan,
as the same scan with each step's inputs read one step ahead (`recurrence.prefetching_scan`), as two independent
half-batch scans in one program, and vmapped over two halves. Each table is measured in a
fresh process with and without `--xla_cpu_enable_concurrency_optimized_scheduler=true` (the scheduler that may
run independent work side by side).

Table 3 (`concurrency`): the same GRU-style scan beside independent work, the two ways a training step could give
XLA:CPU's second core something to do while a recurrence holds the first: a [H, T*B] x [T*B, 4000] product (the size
of the output layer's weight gradient, which needs nothing from the decoder's backward loop) after the scan in one
program, or cut into T slices [H, B] x [B, 4000] inside the scan's body (XLA:CPU does run independent thunks of
one loop iteration on both cores); and the batch split into two scans of 32, one after the other, or at the same
time from two Python threads, on one CPU device or one on each of two (`jax_num_cpu_devices=2`). If XLA:CPU
overlapped them, the program would take max(scan, product) instead of their sum, and the two halves at once as long
as one of them. Measured in two fresh processes: on JAX's defaults (asynchronous dispatch) and set up by
`cpu_runtime.configure()` and `place_worker_threads()` as every `python -m experiments.*` process is (computations
on the calling thread).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import os

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.loop_matmuls'
STEPS, BATCH, HIDDEN = 30, 64, 256
WIDTHS = (768, 4000)
VOCAB = 4000                       # the side product's width (the throughput model's vocabulary)
CONCURRENCY_FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler=true'
TABLES = ('matmuls', 'scans', 'concurrency')


def measure(repeats: int) -> list[dict]:
  """Both tables' rows in this process (its XLA_FLAGS as set by the caller)."""
  import jax
  import jax.numpy as jnp

  from attention_jax.models.recurrence import prefetching_scan

  rng = np.random.default_rng(0)
  rows = []
  for width in WIDTHS:
    h0 = jnp.asarray(rng.standard_normal((BATCH, HIDDEN)), jnp.float32)
    w1 = jnp.asarray(rng.standard_normal((HIDDEN, width)) * 0.05, jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((width, HIDDEN)) * 0.05, jnp.float32)
    step = jax.jit(lambda h, w1, w2: jnp.tanh(jnp.tanh(h @ w1) @ w2))
    loop = jax.jit(lambda h, w1, w2: jax.lax.fori_loop(0, STEPS, lambda _, h: jnp.tanh(jnp.tanh(h @ w1) @ w2), h))

    def python_stepped(h, w1, w2):
      for _ in range(STEPS):
        h = step(h, w1, w2)
      return h

    timed = harness.time_interleaved({'python_stepped': (python_stepped, (h0, w1, w2)),
                                      'one_loop': (loop, (h0, w1, w2))}, repeats=repeats)
    flops = STEPS * 2 * 2 * BATCH * HIDDEN * width
    for name, t in timed.items():
      rows.append({'table': 'matmuls', 'case': f'N={width}, {name}', 'median_ms': t['median_ms'],
                   'gflop_per_s': flops / t['median_ms'] / 1e6})

  w = jnp.asarray(rng.standard_normal((HIDDEN, 3 * HIDDEN)) * 0.05, jnp.float32)
  x = jnp.asarray(rng.standard_normal((STEPS, BATCH, 3 * HIDDEN)), jnp.float32)
  cell = _gru_style_cell(w)

  def scan(x):            # x [T, B', 3H] -> h [T, B', H]
    return jax.lax.scan(cell, jnp.zeros((x.shape[1], HIDDEN), jnp.float32), x)[1]

  def scan_read_ahead(x):  # the same scan, each step's x_t read one step ahead (change 9 of BENCHMARKS section 2)
    return prefetching_scan(cell, jnp.zeros((x.shape[1], HIDDEN), jnp.float32), x)[1]

  half = BATCH // 2
  calls = {
      'one scan, batch 64': jax.jit(scan),
      'one scan, batch 64, inputs read one step ahead': jax.jit(scan_read_ahead),
      'two independent scans of 32': jax.jit(lambda x: jnp.concatenate([scan(x[:, :half]), scan(x[:, half:])], 1)),
      'vmap over two halves of 32': jax.jit(lambda x: jax.vmap(scan, in_axes=1, out_axes=1)(
          x.reshape(STEPS, 2, half, 3 * HIDDEN)).reshape(STEPS, BATCH, HIDDEN)),
  }
  reference = np.asarray(calls['one scan, batch 64'](x))
  for name, fn in calls.items():
    np.testing.assert_allclose(np.asarray(fn(x)), reference, rtol=1e-5, atol=1e-5)
  timed = harness.time_interleaved({name: (fn, (x,)) for name, fn in calls.items()}, repeats=repeats)
  for name, t in timed.items():
    rows.append({'table': 'scans', 'case': name, 'median_ms': t['median_ms'],
                 'gflop_per_s': STEPS * 2 * BATCH * HIDDEN * 3 * HIDDEN / t['median_ms'] / 1e6})
  return rows


def _gru_style_cell(w):
  """(h [B, H], x_t [B, 3H]) -> (h', h'): a GRU-like update with the hidden matmul h [B, H] x w [H, 3H]."""
  import jax
  import jax.numpy as jnp

  def cell(h, x_t):
    r, z, n = jnp.split(h @ w + x_t, 3, axis=-1)
    z = jax.nn.sigmoid(z)
    h = (1.0 - z) * jnp.tanh(n * jax.nn.sigmoid(r)) + z * h
    return h, h

  return cell


def measure_concurrency(repeats: int) -> list[dict]:
  """Table 3's rows in this process, which must have two CPU devices (`jax_num_cpu_devices=2`, set before JAX
  starts). The scan runs over inputs [T, B, 3H] (T = STEPS, B = BATCH, H = HIDDEN); the side product is
  activations^T output_gradients, [H, T*B] x [T*B, VOCAB]. Every way of computing the scan and the product is
  checked against the plain one first."""
  import jax
  import jax.numpy as jnp

  from attention_jax.models.recurrence import prefetching_scan

  first, second = jax.devices()[:2]
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.standard_normal((HIDDEN, 3 * HIDDEN)) * 0.05, jnp.float32)
  x = jnp.asarray(rng.standard_normal((STEPS, BATCH, 3 * HIDDEN)), jnp.float32)
  activations = jnp.asarray(rng.standard_normal((STEPS, BATCH, HIDDEN)), jnp.float32)                # [T, B, H]
  output_gradients = jnp.asarray(rng.standard_normal((STEPS, BATCH, VOCAB)) * 0.01, jnp.float32)     # [T, B, V]
  cell = _gru_style_cell(w)
  scan = jax.jit(lambda x: prefetching_scan(cell, jnp.zeros((x.shape[1], HIDDEN), jnp.float32), x)[1])
  product = jax.jit(lambda acts, grads: acts.reshape(-1, HIDDEN).T @ grads.reshape(-1, VOCAB))     # [H, V]
  scan_then_product = jax.jit(lambda x, acts, grads: (scan(x), product(acts, grads)))

  @jax.jit
  def product_inside_scan(x, acts, grads):
    def step(carry, inputs):
      h, total = carry
      x_t, acts_t, grads_t = inputs                                  # [B, 3H], [B, H], [B, V]
      h, _ = cell(h, x_t)
      return (h, total + acts_t.T @ grads_t), h
    (_, total), hs = prefetching_scan(step, (jnp.zeros((BATCH, HIDDEN), jnp.float32),
                                             jnp.zeros((HIDDEN, VOCAB), jnp.float32)), (x, acts, grads))
    return hs, total

  half = BATCH // 2
  halves = (x[:, :half], x[:, half:])
  on_devices = (jax.device_put(halves[0], first), jax.device_put(halves[1], second))
  threads = ThreadPoolExecutor(2)

  def from_two_threads(parts):
    futures = [threads.submit(lambda part: jax.block_until_ready(scan(part)), part) for part in parts]
    return [f.result() for f in futures]

  def one_after_the_other(parts):
    return [jax.block_until_ready(scan(part)) for part in parts]

  reference_h, reference_total = scan(x), product(activations, output_gradients)
  for hs, total in (scan_then_product(x, activations, output_gradients),
                    product_inside_scan(x, activations, output_gradients)):
    np.testing.assert_allclose(np.asarray(hs), np.asarray(reference_h), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(total), np.asarray(reference_total), rtol=1e-4, atol=1e-3)
  for split in (one_after_the_other(halves), from_two_threads(halves), from_two_threads(on_devices)):
    np.testing.assert_allclose(np.concatenate([np.asarray(h) for h in split], axis=1), np.asarray(reference_h),
                               rtol=1e-5, atol=1e-5)
  calls = {
      'one scan, batch 64': (scan, (x,)),
      f'the [{HIDDEN}, {STEPS * BATCH}] x [{STEPS * BATCH}, {VOCAB}] product alone':
          (product, (activations, output_gradients)),
      'the scan, then the product, one program': (scan_then_product, (x, activations, output_gradients)),
      f'the product in {STEPS} slices inside the scan body': (product_inside_scan, (x, activations, output_gradients)),
      'one scan, batch 32': (scan, (halves[0],)),
      'two scans of 32, one after the other': (one_after_the_other, (halves,)),
      'two scans of 32 from two Python threads, one device': (from_two_threads, (halves,)),
      'two scans of 32 from two Python threads, on two CPU devices': (from_two_threads, (on_devices,)),
  }
  timed = harness.time_interleaved(calls, repeats=repeats)
  threads.shutdown()
  return [{'table': 'concurrency', 'case': name, 'median_ms': t['median_ms'], 'gflop_per_s': None}
          for name, t in timed.items()]


def _in_fresh_process(flags: str, repeats: int, table: str = 'matmuls,scans', configured: bool = False) -> list[dict]:
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
  return harness.run_worker(MODULE, ['--worker', '--repeats', str(repeats), '--table', table,
                                     '--configured', str(int(configured))], env=env, timeout=600)


def _worker(table: str, repeats: int, configured: bool) -> list[dict]:
  """One fresh process's rows: tables 1 and 2 ('matmuls,scans') or table 3 ('concurrency')."""
  if table != 'concurrency':
    return measure(repeats)
  from attention_jax import cpu_runtime
  if configured:
    cpu_runtime.configure()
  import jax
  jax.config.update('jax_num_cpu_devices', 2)
  if configured:
    cpu_runtime.place_worker_threads()
  return measure_concurrency(repeats)


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/loop_matmuls.json')
  parser.add_argument('--repeats', type=int, default=None, help='interleaved rounds (default 15; --quick 5)')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)   # one fresh process's tables
  parser.add_argument('--table', default='matmuls,scans', help=argparse.SUPPRESS)
  parser.add_argument('--configured', type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  repeats = args.repeats or (5 if args.quick else 15)
  if args.worker:
    harness.print_worker_result(_worker(args.table, repeats, bool(args.configured)))
    return {}
  load_before = harness.load_average()
  rows = []
  for label, flags in (('default', ''), ('concurrency scheduler', CONCURRENCY_FLAG)):
    rows += [{'scheduler': label, **row} for row in _in_fresh_process(flags, repeats)]
  for label, configured in (('default (JAX defaults)', False), ('default, cpu_runtime.configure()', True)):
    rows += [{'scheduler': label, **row} for row in _in_fresh_process('', repeats, 'concurrency', configured)]
  for table in TABLES:
    print(f'\n{table} (median of {repeats}, interleaved)\n')
    print(harness.markdown_table([r for r in rows if r['table'] == table],
                                 ['scheduler', 'case', 'median_ms', 'gflop_per_s']))
  return harness.write_results(MODULE, args.out, load_before, {'rows': rows})


if __name__ == '__main__':
  main()
