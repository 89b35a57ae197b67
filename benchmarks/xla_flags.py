"""XLA:CPU compiler flags against the library's default: the throughput model's training step under each XLA_FLAGS.

    python -m benchmarks.xla_flags                    # ~6 min: every flag set below, 2 alternating rounds
    python -m benchmarks.xla_flags --flags='--xla_cpu_enable_fast_math=true' --flags=''   # your own sets
    python -m benchmarks.xla_flags --quick            # a tiny model, two flag sets (smoke test)

Each flag set runs in fresh processes, one per round, each round running every set once (in the given order, and
in reverse order in every second round, so that a drift of the machine does not favour the sets run first). A
process gets the set as its whole XLA_FLAGS (the caller's own XLA_FLAGS is not passed on) and is set up as
experiments/ sets one up (`cpu_runtime.configure()`, then `place_worker_threads()`), so the empty set is the
library's default, which includes `cpu_runtime.COMPILER_FLAGS` (a set that names one of those flags overrides it:
`--xla_cpu_copy_insertion_use_region_analysis=false` measures the step without it). The process compiles the
step of `benchmarks.throughput` (its JaxTrainer) with the compilation cache off, runs 5 steps of warm-up, then
times `--steps` steps in groups of 5 with 0.3 s of idleness before each group. A row holds the median over every
round's steps, each round's median, `first_step_s` (lowering, compiling and running the first step) and the
number of copy instructions in the compiled step. XLA aborts a process whose XLA_FLAGS holds a flag it does not
know; such a set is reported as rejected, with XLA's message.

Read a difference as real only when it exceeds the spread between rounds (`round_ms`): this machine drifts by
several percent within minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

from benchmarks import harness

MODULE = 'benchmarks.xla_flags'
# The flag sets measured in BENCHMARKS.md section 2 (each alone, on top of the library's default).
DEFAULT_SETS = (
    '',
    '--xla_cpu_copy_insertion_use_region_analysis=false',
    '--xla_cpu_enable_concurrency_optimized_scheduler=true',
    '--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED',
    '--xla_cpu_parallel_codegen_split_count=2',
    '--xla_cpu_experimental_ynn_fusion_type=+reduce',
    '--xla_cpu_use_fusion_emitters=false',
    '--xla_cpu_use_thunk_runtime=false',
    '--xla_cpu_enable_platform_dependent_math=true',
    '--xla_cpu_ftz=true',
    '--xla_cpu_enable_fast_min_max=true',
)
QUICK_SETS = ('', '--xla_cpu_copy_insertion_use_region_analysis=false')
GROUP = 5
UNKNOWN_FLAG = re.compile(r'Unknown flags? in XLA_FLAGS[^\n]*')


def measure(steps: int, quick: bool) -> dict:
  """In a fresh process whose XLA_FLAGS the parent chose: compile and time the throughput model's step."""
  from attention_jax import cpu_runtime
  cpu_runtime.configure()
  import jax

  from benchmarks import throughput
  jax.config.update('jax_enable_compilation_cache', False)
  spec = throughput.QUICK_SPEC if quick else throughput.SPEC
  trainer = throughput.JaxTrainer(spec, threads=0)
  batches = throughput.make_batches(spec, GROUP + 1, seed=1)
  start = time.perf_counter()
  compiled = trainer.compile(batches[0])
  trainer.step(batches[0])
  first_step_s = time.perf_counter() - start
  cpu_runtime.place_worker_threads()
  trainer.timed_steps(batches[1:])                     # warm-up
  times = []
  while len(times) < steps:
    time.sleep(0.3)
    times += trainer.timed_steps(batches[1:GROUP + 1])[0]
  return {'times_ms': [1e3 * t for t in times[:steps]], 'first_step_s': first_step_s,
          'copies': len(re.findall(r'= \S+ copy\(', compiled.as_text())),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _run(flags: str, steps: int, quick: bool) -> dict:
  """One fresh process under `flags`: its measurement, or {'rejected': XLA's message}."""
  from attention_jax import cpu_runtime
  env = {**os.environ, 'XLA_FLAGS': flags}
  env.pop(cpu_runtime.OPT_OUT_VARIABLE, None)
  try:
    return harness.run_worker(MODULE, ['--worker', '--steps', str(steps)] + (['--quick'] if quick else []), env=env,
                              timeout=900)
  except RuntimeError as error:
    unknown = UNKNOWN_FLAG.search(str(error))
    if unknown:
      return {'rejected': unknown.group(0)}
    raise


def rows_from(results: dict[str, list[dict]]) -> list[dict]:
  """Per flag set: median step over all rounds, each round's median, compile time, copies (or the rejection)."""
  rows = []
  baseline = None
  for flags, runs in results.items():
    rejected = next((run['rejected'] for run in runs if 'rejected' in run), None)
    if rejected:
      rows.append({'xla_flags': flags or '(library default)', 'median_step_ms': None, 'vs_default': None,
                   'round_ms': '-', 'first_step_s': None, 'copies': None, 'rejected': rejected})
      continue
    every = [t for run in runs for t in run['times_ms']]
    median = statistics.median(every)
    if baseline is None and not flags:
      baseline = median
    rows.append({'xla_flags': flags or '(library default)', 'median_step_ms': median, 'vs_default': None,
                 'round_ms': ' / '.join(f'{statistics.median(run["times_ms"]):.1f}' for run in runs),
                 'first_step_s': statistics.median(run['first_step_s'] for run in runs),
                 'copies': runs[0]['copies'], 'rejected': ''})
  for row in rows:
    if baseline and row['median_step_ms']:
      row['vs_default'] = baseline / row['median_step_ms']     # > 1: faster than the default
  return rows


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/xla_flags.json')
  parser.add_argument('--flags', action='append', default=None,
                      help="one XLA_FLAGS set (repeatable; '' is the library's default); default: the sets measured "
                           'in BENCHMARKS.md')
  parser.add_argument('--rounds', type=int, default=None, help='fresh processes per flag set (default 2; --quick 1)')
  parser.add_argument('--steps', type=int, default=None, help='timed steps per process (default 30; --quick 5)')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  steps = args.steps if args.steps is not None else (GROUP if args.quick else 30)
  if steps < 1 or (args.rounds is not None and args.rounds < 1):
    parser.error(f'--steps and --rounds must be at least 1; got --steps {steps} and --rounds {args.rounds}')
  if args.worker:
    harness.print_worker_result(measure(steps, args.quick))
    return {}
  sets = args.flags if args.flags is not None else list(QUICK_SETS if args.quick else DEFAULT_SETS)
  malformed = [flags for flags in sets if flags.strip() and not flags.lstrip().startswith('--')]
  if malformed:
    parser.error(f'each --flags set must be empty or start with "--" (XLA reads a value that does not as the name '
                 f'of a flags file); got {malformed}')
  sets = list(dict.fromkeys(['', *sets]))           # the default first, for the ratio; each set once
  rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
  load_before = harness.load_average()
  results: dict[str, list[dict]] = {flags: [] for flags in sets}
  for round_index in range(rounds):
    for flags in (sets if round_index % 2 == 0 else sets[::-1]):
      if any('rejected' in run for run in results[flags]):
        continue
      results[flags].append(_run(flags, steps, args.quick))
      last = results[flags][-1]
      shown = last.get('rejected') or f'{statistics.median(last["times_ms"]):.1f} ms'
      print(f'round {round_index + 1}: {flags or "(library default)"}: {shown}', flush=True)
  rows = rows_from(results)
  print(f'\nthe training step under each XLA_FLAGS set ({"tiny model" if args.quick else "benchmarks.throughput"}; '
        f'median of {rounds} x {steps} steps; vs_default > 1 is faster)\n')
  print(harness.markdown_table(rows, ['xla_flags', 'median_step_ms', 'vs_default', 'round_ms', 'first_step_s',
                                      'copies', 'rejected']))
  return harness.write_results(MODULE, args.out, load_before, {
      'settings': {'rounds': rounds, 'steps': steps, 'quick': args.quick}, 'rows': rows, 'runs': results})


if __name__ == '__main__':
  main()
