"""Small matmuls inside XLA:CPU loops: does stepping from Python, splitting the batch into independent scans or the
concurrency-optimised scheduler make the recurrences' matmuls faster than one compiled loop?

    python -m benchmarks.loop_matmuls            # ~1 min: the two tables, interleaved, median of 15
    python -m benchmarks.loop_matmuls --quick    # 5 rounds

Table 1: T = 30 steps of h <- tanh(tanh(h W1) W2) with h [64, 256], W1 [256, N], W2 [N, 256] (N = 768, a GRU's
fused gates; N = 4000, a vocabulary projection), either one jitted `fori_loop` or T calls of a jitted step from
Python (how PyTorch runs a decoder). Table 2: a GRU-style scan over T = 30 steps, batch 64, H = 256, as one scan,
as the same scan with each step's inputs read one step ahead (`recurrence.prefetching_scan`), as two independent
half-batch scans in one program, and vmapped over two halves. Each table is measured in a
fresh process with and without `--xla_cpu_enable_concurrency_optimized_scheduler=true` (the scheduler that may
run independent work side by side).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.loop_matmuls'
STEPS, BATCH, HIDDEN = 30, 64, 256
WIDTHS = (768, 4000)
CONCURRENCY_FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler=true'


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

  def cell(h, x_t):
    r, z, n = jnp.split(h @ w + x_t, 3, axis=-1)
    z = jax.nn.sigmoid(z)
    h = (1.0 - z) * jnp.tanh(n * jax.nn.sigmoid(r)) + z * h
    return h, h

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


def _in_fresh_process(flags: str, repeats: int) -> list[dict]:
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
  return harness.run_worker(MODULE, ['--worker', '--repeats', str(repeats)], env=env, timeout=600)


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/loop_matmuls.json')
  parser.add_argument('--repeats', type=int, default=None, help='interleaved rounds (default 15; --quick 5)')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)   # one fresh process's tables
  args = parser.parse_args(argv)
  repeats = args.repeats or (5 if args.quick else 15)
  if args.worker:
    harness.print_worker_result(measure(repeats))
    return {}
  load_before = harness.load_average()
  rows = []
  for label, flags in (('default', ''), ('concurrency scheduler', CONCURRENCY_FLAG)):
    rows += [{'scheduler': label, **row} for row in _in_fresh_process(flags, repeats)]
  for table in ('matmuls', 'scans'):
    print(f'\n{table} (median of {repeats}, interleaved)\n')
    print(harness.markdown_table([r for r in rows if r['table'] == table],
                                 ['scheduler', 'case', 'median_ms', 'gflop_per_s']))
  return harness.write_results(MODULE, args.out, load_before, {'rows': rows})


if __name__ == '__main__':
  main()
