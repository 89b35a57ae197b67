"""Smoke tests of the benchmark package: helpers, batch format, and that the prototypes compute the library's
functions (no timings are asserted; speed lives in `python -m benchmarks.*`)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import attention
from attention_jax import cpu_runtime
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


def test_a_quick_run_never_overwrites_the_committed_results_unless_told_to():
  """--quick without --out writes to a temporary path; without --quick, the committed file; --out always wins."""
  committed = os.path.join('benchmarks', 'results', 'flop_floor.json')
  parser = harness.base_parser('test', committed)
  assert parser.parse_args([]).out == committed
  quick = parser.parse_args(['--quick']).out
  assert quick == harness.quick_results_path(committed) and os.path.realpath(quick) != os.path.realpath(committed)
  assert not os.path.realpath(quick).startswith(os.path.realpath('benchmarks'))
  assert parser.parse_args(['--quick', '--out', 'x.json']).out == 'x.json'


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
  assert result['spec'] == throughput.QUICK_SPEC          # --quick: both workers train the tiny model
  assert rows['attention_jax']['params'] == rows[throughput.BASELINE]['params'] < 100_000
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


@pytest.mark.parametrize('configured', [0, 1])
def test_loop_matmuls_concurrency_table_runs_on_two_devices_and_its_ways_agree(configured):
  """Table 3 in its own process (two CPU devices must be set before JAX starts), on JAX's defaults and configured;
  measure_concurrency checks the in-loop product, the sequential, threaded and two-device halves against the plain
  scan and product (assert_allclose inside), so a wrong slice or device placement fails here."""
  from benchmarks import harness, loop_matmuls
  rows = harness.run_worker(loop_matmuls.MODULE, ['--worker', '--repeats', '1', '--table', 'concurrency',
                                                  '--configured', str(configured)], timeout=300)
  cases = [row['case'] for row in rows]
  assert len(cases) == len(set(cases)) == 8 and {row['table'] for row in rows} == {'concurrency'}
  assert any('two CPU devices' in case for case in cases)
  assert all(row['median_ms'] > 0 for row in rows)


def test_step_profile_classifies_op_names_into_parts_and_directions():
  from benchmarks.step_profile import classify
  cases = {
      'jit(train_step)/jvp(Seq2Seq)/Seq2Seq.encode/source_encoder/while/body/closed_call/dot_general':
          ('encoder', 'forward'),
      'jit(train_step)/transpose(jvp(Seq2Seq))/Seq2Seq.encode/cell.prepare_memory/dot_general':
          ('encoder', 'backward'),
      'jit(train_step)/transpose(jvp(Seq2Seq))/cell.teacher_forced/while/body/closed_call/cell.step/add_any':
          ('decoder scan', 'backward'),
      'jit(train_step)/jvp(Seq2Seq)/cell.teacher_forced/cell.readout_logits/readout/dot_general':
          ('output layer', 'forward'),
      'jit(train_step)/jvp(Seq2Seq)/cell.teacher_forced/dot_general': ('rest of the model', 'forward'),
      'jit(train_step)/transpose(jvp(jit(take_along_axis)))/scatter-add': ('loss and metrics', 'backward'),
      'jit(train_step)/jvp()/reduce_max': ('loss and metrics', 'forward'),
      'jit(train_step)/jit(_where)/select_n': ('optimizer and guard', '-'),
      '': ('optimizer and guard', '-'),
  }
  for op_name, want in cases.items():
    assert classify(op_name) == want, op_name


STEP_PROFILE_HLO = '''HloModule jit_train_step

%body.1 (arg: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %arg = (s32[], f32[4,8]{1,0}) parameter(0)
  %gte.1 = f32[4,8]{1,0} get-tuple-element(%arg), index=1
  %dot.5 = f32[4,8]{1,0} dot(%gte.1, %gte.1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, \
metadata={op_name="jit(train_step)/jvp(Seq2Seq)/cell.teacher_forced/while/body/dot_general"}
  %copy.2 = f32[4,8]{1,0} copy(%dot.5)
  %copy.3 = s32[] copy(%gte.0)
  ROOT %tuple.1 = (s32[], f32[4,8]{1,0}) tuple(%copy.3, %copy.2)
}

ENTRY %main.9 (p: f32[4,8]) -> f32[4,8] {
  %p = f32[4,8]{1,0} parameter(0)
  %copy.7 = f32[4,8]{1,0} copy(%p)
  %tuple.2 = (s32[], f32[4,8]{1,0}) tuple(%c, %copy.7)
  %while.3 = (s32[], f32[4,8]{1,0}) while(%tuple.2), condition=%cond.1, body=%body.1, \
metadata={op_name="jit(train_step)/transpose(jvp(Seq2Seq))/cell.teacher_forced/while"}
  ROOT %fusion.4 = f32[4,8]{1,0} fusion(%while.3), kind=kLoop, calls=%fused.1, \
metadata={op_name="jit(train_step)/jit(_where)/select_n"}
}
'''.replace('\\\n', '')


def test_step_profile_instruction_table_parses_tuple_shapes_and_inherits_op_names():
  from benchmarks.step_profile import instruction_table
  table = instruction_table(STEP_PROFILE_HLO)
  assert table['while.3']['opcode'] == 'while' and table['while.3']['shape'] == '(s32[], f32[4,8]{1,0})'
  assert table['dot.5']['opcode'] == 'dot' and table['dot.5']['shape'] == 'f32[4,8]{1,0}'
  assert table['copy.2']['op_name'] == table['dot.5']['op_name']                  # from its operand
  assert table['copy.3']['op_name'].endswith('cell.teacher_forced/while')          # from the loop that runs it
  assert table['copy.7']['op_name'].endswith('cell.teacher_forced/while')          # from its user, via the tuple
  assert table['fusion.4']['op_name'] == 'jit(train_step)/jit(_where)/select_n'    # its own


def test_step_profile_attributes_summed_and_busy_time_per_step():
  from benchmarks.step_profile import STEP_ANNOTATION, attribute, instruction_table
  table = instruction_table(STEP_PROFILE_HLO)
  event = lambda name, ts, dur, tid=1: {'ph': 'X', 'name': name, 'ts': ts, 'dur': dur, 'tid': tid}
  events = [event(STEP_ANNOTATION, 0, 100), event(STEP_ANNOTATION, 1000, 100),
            # step 1: two overlapping decoder-scan thunks (summed 30 us, busy 20 us), the loop itself (not
            # counted: it only runs its body), the optimizer's fusion
            event('dot.5', 10, 20), event('copy.2', 15, 10, tid=2), event('while.3', 5, 40), event('fusion.4', 50, 8),
            # step 2: one decoder-scan thunk; an unknown event and one between the steps are ignored
            event('dot.5', 1010, 40), event('ThreadpoolListener::Record', 1010, 5), event('dot.5', 500, 99)]
  result = attribute(events, table)
  rows = {(r['part'], r['direction']): r for r in result['rows']}
  assert set(rows) == {('decoder scan', 'forward'), ('optimizer and guard', '-')}
  assert np.isclose(rows['decoder scan', 'forward']['summed_ms'], (30 + 40) / 2 / 1e3)
  assert np.isclose(rows['decoder scan', 'forward']['busy_ms'], (20 + 40) / 2 / 1e3)
  assert np.isclose(rows['optimizer and guard', '-']['summed_ms'], 8 / 2 / 1e3)
  assert result['steps'] == 2 and np.isclose(result['step_ms'], 0.1)
  assert np.isclose(result['any_thunk_busy_ms'], (28 + 40) / 2 / 1e3)
  assert result['instructions']['dot.5']['calls_per_step'] == 1.0


def test_step_profile_traces_a_real_step_and_finds_every_part():
  from benchmarks import step_profile
  result = step_profile.profile(throughput.QUICK_SPEC, steps=2, warmup=1)
  rows = {(r['part'], r['direction']): r for r in result['rows']}
  for part in ('encoder', 'decoder scan', 'output layer'):
    for direction in ('forward', 'backward'):
      assert rows[part, direction]['summed_ms'] > 0, (part, direction)
  assert rows['optimizer and guard', '-']['summed_ms'] > 0
  assert all(0 < r['busy_ms'] <= r['summed_ms'] + 1e-9 for r in result['rows'])
  assert 0 < result['any_thunk_busy_ms'] <= result['step_ms']
  loops = [i for i in result['instructions'].values() if i['part'].startswith('decoder scan')]
  assert max(i['calls_per_step'] for i in loops) == throughput.QUICK_SPEC['target_length']


def test_step_profile_classifies_decoding_op_names():
  from benchmarks.step_profile import DECODING_PARTS, classify_decoding
  cases = {
      'jit(greedy_decode)/Seq2Seq.encode/source_encoder/while/body/closed_call/dot_general': 'encoder',
      'jit(beam_search_n_best)/Seq2Seq.initial_state/cell.initial_state/bridge/dot_general': 'encoder',
      'jit(greedy_decode)/while/body/closed_call/Seq2Seq.decode_step/cell/cell.recurrent_step/cell._attend/'
      'attention.attend_prepared/vmap()/tanh': 'attention',
      'jit(greedy_decode)/while/body/closed_call/Seq2Seq.decode_step/cell/cell.recurrent_step/rnn/dot_general':
          'recurrence',
      'jit(greedy_decode)/while/body/closed_call/Seq2Seq.decode_step/cell/cell.readout_logits/'
      'cell.vocabulary_logits/output/dot_general': 'output layer',
      'jit(beam_search_n_best)/while/body/closed_call/jit(log_softmax)/reduce_max': 'output layer',
      'jit(beam_search_n_best)/while/body/closed_call/top_k': 'search',
      '': 'search',
  }
  for op_name, want in cases.items():
    assert classify_decoding(op_name) == (want, '-'), op_name
  assert set(cases.values()) == set(DECODING_PARTS)


@pytest.mark.parametrize('program', ['greedy', 'beam'])
def test_step_profile_traces_a_real_decoding_call_and_finds_every_part(program):
  from benchmarks import step_profile
  spec = throughput.QUICK_SPEC
  result = step_profile.profile(spec, steps=2, warmup=1, program=program)
  rows = {r['part']: r for r in result['rows']}
  assert set(rows) == set(step_profile.DECODING_PARTS)
  assert all(r['direction'] == '-' and 0 < r['busy_ms'] <= r['summed_ms'] + 1e-9 for r in result['rows'])
  assert 0 < result['any_thunk_busy_ms'] <= result['step_ms']
  per_position = [i for i in result['instructions'].values() if i['part'] in ('attention -', 'recurrence -')]
  assert max(i['calls_per_step'] for i in per_position) == spec['target_length']
  with pytest.raises(ValueError, match='unknown program'):
    step_profile.profile(spec, steps=1, program='sample')


def test_loop_prefetch_reads_the_logged_rates_and_leaves_out_the_first_interval(tmp_path):
  from benchmarks import loop_prefetch
  lines = [{'step': 100, 'split': 'train', 'steps_per_second': 4.0},
           {'step': 50, 'split': 'train', 'steps_per_second': 1.0},          # compilation: left out
           {'step': 100, 'split': 'validation', 'loss': 1.0},
           {'step': 130, 'split': 'train', 'steps_per_second': 2.0}]
  path = tmp_path / 'metrics.jsonl'
  path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
  rates = loop_prefetch.interval_rates(str(path))
  assert rates == [(50, 1.0), (100, 4.0), (130, 2.0)]
  steps, seconds = loop_prefetch.timed_seconds(rates)
  assert steps == 80 and np.isclose(seconds, 50 / 4.0 + 30 / 2.0)
  with pytest.raises(ValueError, match='fewer than two'):
    loop_prefetch.timed_seconds(rates[:1])


@pytest.mark.skipif(not cpu_runtime.COMPILER_FLAGS_JAXLIB[0] <= cpu_runtime._jaxlib_version()
                    < cpu_runtime.COMPILER_FLAGS_JAXLIB[1], reason='a jaxlib not verified with cpu_runtime.COMPILER_FLAGS')
def test_xla_flags_runs_each_set_in_its_own_process_and_reports_a_rejected_flag(tmp_path):
  from benchmarks import xla_flags
  out = tmp_path / 'flags.json'
  result = xla_flags.main(['--quick', '--flags=--xla_cpu_copy_insertion_use_region_analysis=false',
                           '--flags=--xla_cpu_no_such_flag=true', '--out', str(out)])
  rows = {row['xla_flags']: row for row in result['rows']}
  assert list(rows) == ['(library default)', '--xla_cpu_copy_insertion_use_region_analysis=false',
                        '--xla_cpu_no_such_flag=true']            # the default is added first, for the ratio
  default, off, unknown = rows.values()
  assert default['vs_default'] == 1.0 and default['median_step_ms'] > 0
  # Each process got its own XLA_FLAGS: the library's compiler flag unless the set overrides it.
  assert 'region_analysis=true' in result['runs'][''][0]['xla_flags']
  assert result['runs']['--xla_cpu_copy_insertion_use_region_analysis=false'][0]['xla_flags'].endswith('=false')
  assert off['copies'] > default['copies']
  assert unknown['median_step_ms'] is None and 'Unknown flag' in unknown['rejected']
  assert json.loads(out.read_text())['rows'] == result['rows']


@pytest.mark.parametrize('argv', [['--steps', '0'], ['--rounds', '0'], ['--flags=xla_cpu_ftz=true']])
def test_xla_flags_refuses_bad_arguments_before_running_anything(argv, capsys):
  from benchmarks import xla_flags
  with pytest.raises(SystemExit):
    xla_flags.main(['--quick', *argv])
  assert 'round 1' not in capsys.readouterr().out


def test_query_chunks_benchmark_times_both_forms_and_names_the_rule_s_choice(tmp_path):
  from attention_jax import memory_efficient
  from benchmarks import query_chunks
  result = query_chunks.main(['--quick', '--out', str(tmp_path / 'query_chunks.json')])
  small, large = result['rows']              # T * S * H below and at memory_efficient.CHUNK_ELEMENTS
  assert (small['auto'], large['auto']) == ('all at once', 'chunks of 8')
  assert all(row['all_at_once_ms'] > 0 and row['chunks_ms'] > 0 for row in result['rows'])
  assert large['chunks_MiB'] < large['all_at_once_MiB']
  assert json.loads((tmp_path / 'query_chunks.json').read_text())['chunk_elements'] == memory_efficient.CHUNK_ELEMENTS
