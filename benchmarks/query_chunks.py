"""When taking the query positions in chunks pays: `modules.Attention`'s 'auto' rule against all at once and chunks.

    python -m benchmarks.query_chunks           # ~4 min on 2 CPU cores
    python -m benchmarks.query_chunks --quick   # smoke run

Additive attention with T query positions over S keys (queries [B, T, d], keys = values [B, S, d], padding mask
[B, S]), forward + backward (the gradient of the context's sum with respect to the parameters, queries and keys),
through `modules.Attention` with `query_chunks='off'` (the vmapped form, whose hidden layer is [B, T, S, H]) and
`query_chunks=memory_efficient.DEFAULT_CHUNK_SIZE` (`lax.map` over chunks, each rematerialised in the backward
pass), interleaved, median of --repeats; memory is XLA's compiled temp + output bytes. `auto` is what the default
`query_chunks='auto'` picks for the case (chunks from T * S * H >= memory_efficient.CHUNK_ELEMENTS per example):
`auto_vs_faster` is its time over the faster of the two (1.00: it picked the faster).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax import memory_efficient
from attention_jax import modules
from benchmarks import harness

MODULE = 'benchmarks.query_chunks'
# (B, T, S, d, H) around the threshold of 0.12 M hidden-layer elements per example
# (memory_efficient.CHUNK_ELEMENTS), and up to 140x it.
CASES = ((32, 20, 20, 256, 256), (32, 20, 50, 128, 128), (32, 40, 50, 128, 128),
         (64, 20, 50, 256, 256), (16, 50, 100, 128, 128),
         (16, 50, 100, 256, 256), (16, 50, 400, 128, 128), (8, 64, 512, 64, 128), (8, 64, 2048, 64, 128))
QUICK_CASES = ((4, 12, 16, 8, 8), (2, 16, 64, 8, 256))


def measure_case(batch: int, length: int, source_length: int, dim: int, hidden: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  query = jnp.asarray(rng.standard_normal((batch, length, dim)), jnp.float32)
  keys = jnp.asarray(rng.standard_normal((batch, source_length, dim)), jnp.float32)
  mask = jnp.asarray(rng.random((batch, source_length)) > 0.1).at[:, 0].set(True)
  options = {'hidden_dim': hidden}
  params = modules.Attention('additive', scorer_options=options).init(jax.random.key(0), query, keys, keys,
                                                                      mask)['params']
  chunk = memory_efficient.DEFAULT_CHUNK_SIZE
  auto = memory_efficient.chunk_size_for('additive', params['scorer'], query, source_length)
  calls, memory = {}, {}
  for label, chunks in (('all_at_once', 'off'), ('chunks', chunk)):
    module = modules.Attention('additive', scorer_options=options, query_chunks=chunks)
    loss = lambda p, q, k, module=module: jnp.sum(module.apply({'params': p}, q, k, k, mask)[0])
    compiled, plan = harness.compile_with_memory(jax.grad(loss, argnums=(0, 1, 2)), params, query, keys)
    calls[label] = (compiled, (params, query, keys))
    memory[label] = plan['peak_bytes'] / 2 ** 20
  times = harness.time_interleaved(calls, repeats=repeats)
  row = {'B': batch, 'T': length, 'S': source_length, 'd': dim, 'H': hidden,
         'TSH_M': length * source_length * hidden / 1e6, 'auto': f'chunks of {auto}' if auto else 'all at once',
         'all_at_once_ms': times['all_at_once']['median_ms'], 'chunks_ms': times['chunks']['median_ms'],
         'all_at_once_MiB': memory['all_at_once'], 'chunks_MiB': memory['chunks']}
  row['speedup'] = row['all_at_once_ms'] / row['chunks_ms']
  row['auto_vs_faster'] = row['chunks_ms' if auto else 'all_at_once_ms'] / min(row['chunks_ms'],
                                                                                row['all_at_once_ms'])
  return row


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/query_chunks.json')
  parser.add_argument('--repeats', type=int, default=None, help='interleaved timed calls per case')
  args = parser.parse_args(argv)
  load_before = harness.load_average()
  repeats = args.repeats or (2 if args.quick else 7)
  info = harness.machine_info()
  print(f'# additive attention, forward + backward, on {info["cpu"]} ({info["cpu_count"]} cores), median of '
        f'{repeats}, chunks of {memory_efficient.DEFAULT_CHUNK_SIZE}\n', flush=True)
  rows = []
  for case in (QUICK_CASES if args.quick else CASES):
    rows.append(measure_case(*case, repeats=repeats))
    print(f'  {rows[-1]["TSH_M"]:.2f} M: {rows[-1]["all_at_once_ms"]:.2f} vs {rows[-1]["chunks_ms"]:.2f} ms',
          flush=True)
  print()
  print(harness.markdown_table(rows, ['B', 'T', 'S', 'd', 'H', 'TSH_M', 'all_at_once_ms', 'chunks_ms', 'speedup',
                                      'all_at_once_MiB', 'chunks_MiB', 'auto', 'auto_vs_faster']))
  return harness.write_results(MODULE, args.out, load_before, {'repeats': repeats, 'rows': rows,
                                                               'chunk_size': memory_efficient.DEFAULT_CHUNK_SIZE,
                                                               'chunk_elements': memory_efficient.CHUNK_ELEMENTS})


if __name__ == '__main__':
  main()
