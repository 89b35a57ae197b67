"""Scorer micro-benchmarks: forward and forward+backward time and compiled memory of batched attention.

    python -m benchmarks.scorers            # full table (a few minutes on 2 CPU cores)
    python -m benchmarks.scorers --quick    # smoke run

For every registered scorer, `batched_attend` (queries [B, T, d], keys/values [B, S, d]) is jit-compiled and
timed: median of --repeats runs after a warm-up, with block_until_ready. Memory is XLA's compiled temp +
output bytes (`memory_analysis()`), which is what the step needs beyond its inputs. scaled_dot is also run
multi-head against `jax.nn.dot_product_attention` on the same inputs. Writes benchmarks/results/scorers.json
(with --quick, a temporary file unless --out is given).
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax import attention
from attention_jax import memory_efficient
from attention_jax import scoring
from benchmarks import harness


def median_seconds(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))                       # compile + warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def compiled_bytes(fn, args) -> int:
  analysis = fn.lower(*args).compile().memory_analysis()
  return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes) if analysis else -1


def scorer_case(name: str, batch: int, t: int, s: int, dim: int, hidden: int, dtype, repeats: int) -> dict:
  options = {'hidden_dim': hidden} if 'hidden_dim' in scoring.get(name).options else {}
  options = scoring.with_source_length(name, options, s)
  params = scoring.init(name, jax.random.key(0), dim, dim, **options)
  params = jax.tree.map(lambda x: x.astype(dtype), params)
  rng = np.random.default_rng(0)
  query = jnp.asarray(rng.standard_normal((batch, t, dim)), dtype)
  keys = jnp.asarray(rng.standard_normal((batch, s, dim)), dtype)
  mask = jnp.ones((batch, s), bool)
  state = {state_name: jnp.full((batch, t, s), 1.0 / s) for state_name in scoring.get(name).state_names}

  def forward(params, query, keys):
    return attention.batched_attend(name, params, query, keys, keys, mask, **state)[0]

  def loss(params, query, keys):
    return jnp.sum(forward(params, query, keys).astype(jnp.float32))

  fwd = jax.jit(forward)
  bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  args = (params, query, keys)
  return {'scorer': name, 'B': batch, 'T': t, 'S': s, 'd': dim, 'H': hidden, 'dtype': jnp.dtype(dtype).name,
          'forward_ms': 1e3 * median_seconds(fwd, args, repeats),
          'forward_backward_ms': 1e3 * median_seconds(bwd, args, repeats),
          'forward_MiB': compiled_bytes(fwd, args) / 2 ** 20, 'forward_backward_MiB': compiled_bytes(bwd, args) / 2 ** 20}


def multi_head_case(batch: int, length: int, heads: int, head_dim: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32) for _ in range(3))
  mask = jnp.ones((batch, length), bool)
  ours = jax.jit(lambda q, k, v: attention.multi_head_attend('scaled_dot', {}, q, k, v, mask)[0])
  reference = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :]))
  np.testing.assert_allclose(ours(q, k, v), reference(q, k, v), rtol=1e-4, atol=1e-4)
  # Interleave the two so that machine noise hits both alike.
  ours_times, ref_times = [], []
  for _ in range(repeats):
    ours_times.append(median_seconds(ours, (q, k, v), 1))
    ref_times.append(median_seconds(reference, (q, k, v), 1))
  ours_ms, ref_ms = 1e3 * statistics.median(ours_times), 1e3 * statistics.median(ref_times)
  return {'B': batch, 'L': length, 'heads': heads, 'head_dim': head_dim, 'attention_jax_ms': ours_ms,
          'jax_nn_dot_product_attention_ms': ref_ms, 'ratio': ours_ms / ref_ms,
          'attention_jax_MiB': compiled_bytes(ours, (q, k, v)) / 2 ** 20,
          'jax_nn_MiB': compiled_bytes(reference, (q, k, v)) / 2 ** 20}


def memory_lean_case(s: int, repeats: int, batch: int = 8, t: int = 64, dim: int = 64, hidden: int = 128) -> dict:
  """Additive attention over a long source: vmapped reference vs chunked_batched_attend (chunk of 8 queries)."""
  params = scoring.init('additive', jax.random.key(0), dim, dim, hidden_dim=hidden)
  rng = np.random.default_rng(0)
  query = jnp.asarray(rng.standard_normal((batch, t, dim)), jnp.float32)
  keys = jnp.asarray(rng.standard_normal((batch, s, dim)), jnp.float32)
  mask = jnp.ones((batch, s), bool)
  row = {'B': batch, 'T': t, 'S': s, 'H': hidden}
  for label, fn in (('reference', lambda p, q, k: attention.batched_attend('additive', p, q, k, k, mask)[0]),
                    ('chunked', lambda p, q, k: memory_efficient.chunked_batched_attend(
                        'additive', p, q, k, k, mask, chunk_size=8)[0])):
    grad = jax.jit(jax.grad(lambda p, q, k, fn=fn: jnp.sum(fn(p, q, k)), argnums=(0, 1, 2)))
    row[f'{label}_fwd_bwd_ms'] = 1e3 * median_seconds(grad, (params, query, keys), repeats)
    row[f'{label}_fwd_bwd_MiB'] = compiled_bytes(grad, (params, query, keys)) / 2 ** 20
  return row


def main():
  parser = harness.base_parser(__doc__.splitlines()[0], os.path.join('benchmarks', 'results', 'scorers.json'))
  parser.add_argument('--repeats', type=int, default=None)
  args = parser.parse_args()
  load_before = harness.load_average()
  repeats = args.repeats or (3 if args.quick else 9)
  sizes = [(8, 8, 16, 32, 32)] if args.quick else [(32, 20, 20, 128, 128), (32, 20, 100, 128, 128),
                                                   (16, 50, 400, 128, 128)]
  rows = []
  for b, t, s, d, h in sizes:
    for name in scoring.names():
      rows.append(scorer_case(name, b, t, s, d, h, jnp.float32, repeats))
  for name in ('additive', 'general', 'scaled_dot'):
    b, t, s, d, h = sizes[-1]
    rows.append(scorer_case(name, b, t, s, d, h, jnp.bfloat16, repeats))
  mha = [multi_head_case(4, 64, 4, 32, repeats)] if args.quick else [
      multi_head_case(32, 256, 8, 64, repeats), multi_head_case(8, 1024, 8, 64, max(5, repeats // 3))]

  lean = [memory_lean_case(128, repeats)] if args.quick else [memory_lean_case(s, max(3, repeats // 2))
                                                              for s in (512, 2048)]

  header = f'{"scorer":<15}{"dtype":<9}{"B":>4}{"T":>5}{"S":>5}{"fwd ms":>10}{"fwd+bwd ms":>12}{"fwd MiB":>9}{"f+b MiB":>9}'
  print(header)
  for r in rows:
    print(f'{r["scorer"]:<15}{r["dtype"]:<9}{r["B"]:>4}{r["T"]:>5}{r["S"]:>5}{r["forward_ms"]:>10.2f}'
          f'{r["forward_backward_ms"]:>12.2f}{r["forward_MiB"]:>9.1f}{r["forward_backward_MiB"]:>9.1f}')
  print()
  print(f'{"multi-head scaled_dot":<24}{"ours ms":>9}{"jax.nn ms":>11}{"ratio":>7}{"ours MiB":>10}{"jax.nn MiB":>11}')
  for r in mha:
    label = f'B={r["B"]} L={r["L"]} N={r["heads"]} h={r["head_dim"]}'
    print(f'{label:<24}{r["attention_jax_ms"]:>9.2f}{r["jax_nn_dot_product_attention_ms"]:>11.2f}{r["ratio"]:>7.2f}'
          f'{r["attention_jax_MiB"]:>10.1f}{r["jax_nn_MiB"]:>11.1f}')
  print()
  print(f'{"additive, long sources":<28}{"ref ms":>9}{"chunked ms":>12}{"ref MiB":>10}{"chunked MiB":>13}')
  for r in lean:
    label = f'B={r["B"]} T={r["T"]} S={r["S"]} H={r["H"]}'
    print(f'{label:<28}{r["reference_fwd_bwd_ms"]:>9.1f}{r["chunked_fwd_bwd_ms"]:>12.1f}'
          f'{r["reference_fwd_bwd_MiB"]:>10.1f}{r["chunked_fwd_bwd_MiB"]:>13.1f}')
  machine = {**harness.machine_info(), 'load_average': load_before, 'device': str(jax.devices()[0]),
             'repeats': repeats}
  print(f'\n{machine}\nrerun: {harness.rerun_command("benchmarks.scorers")}')
  harness.write_json(args.out, {'machine': machine, 'scorers': rows, 'multi_head': mha, 'memory_lean': lean,
                                'command': harness.rerun_command('benchmarks.scorers')})


if __name__ == '__main__':
  main()
