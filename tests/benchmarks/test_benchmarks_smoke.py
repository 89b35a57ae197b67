"""Smoke tests of the benchmark package: helpers, batch format, and that the prototypes compute the library's
functions (no timings are asserted; speed lives in `python -m benchmarks.*`)."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax import attention
from benchmarks import fast_paths
from benchmarks import harness
from benchmarks import throughput


def test_harness_timing_memory_and_table():
  fn = lambda x: jnp.tanh(x) @ x
  x = jnp.ones((8, 8))
  compiled, memory = harness.compile_with_memory(fn, x)
  np.testing.assert_allclose(np.asarray(compiled(x)), np.asarray(fn(x)), rtol=1e-6)
  assert memory['output_bytes'] == 8 * 8 * 4 and memory['peak_bytes'] >= memory['output_bytes']
  stats = harness.time_call(compiled, x, repeats=3, warmup=1)
  assert stats['repeats'] == 3 and len(stats['runs_ms']) == 3 and stats['min_ms'] <= stats['median_ms']
  interleaved = harness.time_interleaved({'a': (compiled, (x,)), 'b': (compiled, (x,))}, repeats=2, warmup=1)
  assert set(interleaved) == {'a', 'b'}
  table = harness.markdown_table([{'name': 'a', 'ms': 1.234}, {'name': 'b'}], ['name', 'ms'])
  assert table.splitlines() == ['| name | ms |', '|---|---|', '| a | 1.23 |', '| b | - |']


def test_throughput_batches_follow_the_batch_contract():
  spec = {**throughput.SPEC, 'batch_size': 3, 'source_length': 5, 'target_length': 4, 'vocab_size': 50}
  batch = throughput.make_batches(spec, 2)[1]
  assert batch['source'].shape == (3, 5) and batch['target_in'].shape == batch['target_out'].shape == (3, 4)
  assert all(v.dtype == np.int32 for v in batch.values())
  np.testing.assert_array_equal(batch['source'][:, -1], 2)                       # EOS
  np.testing.assert_array_equal(batch['target_in'][:, 0], 1)                     # BOS
  np.testing.assert_array_equal(batch['target_in'][:, 1:], batch['target_out'][:, :-1])
  assert batch['source'][:, :-1].min() >= 4 and batch['source'].max() < 50       # no PAD/UNK inside


def test_einsum_prototype_matches_multi_head_attend():
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (2, 3, 2, 4))
  k = jax.random.normal(keys[1], (2, 5, 2, 4))
  v = jax.random.normal(keys[2], (2, 5, 2, 3))
  mask = jnp.asarray([[True] * 5, [True, True, False, False, False]])
  expected = attention.multi_head_attend('scaled_dot', {}, q, k, v, mask)
  actual = fast_paths.einsum_multi_head_attend(q, k, v, mask)
  for a, e in zip(actual, expected):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-6)


def test_throughput_drives_training_decoding_and_a_baseline_checkout(tmp_path):
  """The worker protocol end to end: training steps, greedy and beam decoding, and another checkout (here this
  one) as the baseline row, which names its commit; rows hold positive timings."""
  out = tmp_path / 'throughput.json'
  result = throughput.main(['--quick', '--frameworks', 'attention_jax', '--rounds', '1', '--steps', '1',
                            '--warmup', '0', '--decode_rounds', '1', '--baseline_tree', '.', '--out', str(out)])
  rows = {row['framework']: row for row in result['rows']}
  assert set(rows) == {'attention_jax', throughput.BASELINE}
  assert all(row['median_step_ms'] > 0 and row['steps_timed'] == 1 for row in rows.values())
  assert 'the checkout . at' in rows[throughput.BASELINE]['settings']
  decoded = {(row['framework'], row['decoding']) for row in result['decode_rows']}
  assert decoded == {(f, mode) for f in rows for mode in ('greedy', f'beam {throughput.BEAM_SIZE}')}
  assert all(row['sentences_per_s'] > 0 and row['after_idle_ms'] > 0 and row['back_to_back_ms'] > 0
             for row in result['decode_rows'])
  # The attention_jax worker places XLA's worker threads as the entry points do (Linux with 2+ CPUs).
  if hasattr(os, 'sched_getaffinity') and len(os.sched_getaffinity(0)) >= 2:
    assert 'worker threads: pinned' in rows['attention_jax']['settings']
  assert out.exists()


def test_loop_matmuls_rows_cover_both_tables_and_the_split_scans_agree():
  """measure() itself checks that the read-ahead, split and vmapped scans equal the single scan (assert_allclose
  inside)."""
  from benchmarks import loop_matmuls
  rows = loop_matmuls.measure(repeats=1)
  cases = {(row['table'], row['case']) for row in rows}
  assert len(rows) == len(cases) == 2 * len(loop_matmuls.WIDTHS) + 4
  assert {table for table, _ in cases} == {'matmuls', 'scans'}
  assert all(row['median_ms'] > 0 and row['gflop_per_s'] > 0 for row in rows)
