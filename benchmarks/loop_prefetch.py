"""The real training loop with and without the next batches built on a thread (`config.train.prefetch_batches`).

    python -m benchmarks.loop_prefetch             # ~10 min: messages En-Fr, 300 steps, 2 rounds of depth 2 and 0
    python -m benchmarks.loop_prefetch --quick     # the date task of configs/default.py, 60 steps, one round

Each run is `python -m experiments.train --config=<config> --config.train.prefetch_batches=<depth>` in a fresh
process and a fresh workdir, the depths alternating within each round. A run logs steps/s every 50 steps
(`metrics.jsonl`); the first interval holds the first compilations and is left out, and the rest add up to the
run's training seconds, so every depth trains on the same batches in the same order (the loop's data order does
not depend on the depth). The end of each run (evaluation of a few test examples, the report) is not timed. For a
translation config it first times building one training batch on the host, what prefetching can hide.
Needs the config's data (`python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data` for the
default; the date task is generated).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import harness

MODULE = 'benchmarks.loop_prefetch'
LOG_EVERY = 50


def interval_rates(metrics_path: str) -> list[tuple[int, float]]:
  """metrics.jsonl -> [(step, steps per second)] of the training log lines, in step order."""
  with open(metrics_path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return sorted((int(r['step']), float(r['steps_per_second'])) for r in rows
                if r.get('split') == 'train' and 'steps_per_second' in r)


def timed_seconds(rates: list[tuple[int, float]]) -> tuple[int, float]:
  """(steps, seconds) after the first logged interval: each interval's steps / its rate."""
  steps, seconds, previous = 0, 0.0, None
  for step, rate in rates:
    if previous is not None:
      steps += step - previous
      seconds += (step - previous) / rate
    previous = step
  if not steps:
    raise ValueError('fewer than two logged intervals: raise --steps')
  return steps, seconds


def host_batch_ms(config_path: str, count: int = 60) -> float | None:
  """Median time of `next()` on a translation config's training iterator (after 5 warm-up batches), in this
  process: what a loop without prefetching pays per step. None for other tasks."""
  config = harness.load_config(config_path)
  if config.get('experiment', 'translation') != 'translation':
    return None
  from attention_jax.tasks import translation
  task, _ = translation.build(config)
  batches = translation.train_batches(config, task)
  times = []
  for _ in range(count):
    start = time.perf_counter()
    next(batches)
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times[5:])


def run_training(config: str, depth: int, steps: int, workdir: str) -> list[tuple[int, float]]:
  command = [sys.executable, '-m', 'experiments.train', f'--config={config}', f'--workdir={workdir}',
             f'--config.train.num_steps={steps}', f'--config.train.log_every={LOG_EVERY}',
             f'--config.train.eval_every={steps + 1}', f'--config.train.checkpoint_every={steps + 1}',
             f'--config.train.prefetch_batches={depth}', '--config.eval.max_examples=8']
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  if done.returncode or not os.path.exists(metrics):
    raise RuntimeError(f'{" ".join(command)} failed (exit status {done.returncode}):\n{done.stderr[-3000:]}')
  return interval_rates(metrics)


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/loop_prefetch.json')
  parser.add_argument('--config', default='configs/messages_en_fr_cpu.py')
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--depths', default='2,0', help='prefetch depths, comma-separated, in run order')
  args = parser.parse_args(argv)
  if args.quick:
    args.config, args.steps, args.rounds = 'configs/default.py', 2 * LOG_EVERY + 10, 1
  try:
    depths = [int(d) for d in args.depths.split(',')]
  except ValueError:
    depths = []
  if not depths or min(depths) < 0:
    raise SystemExit(f'--depths must be integers >= 0 separated by commas (e.g. 2,0), got {args.depths!r}')
  if args.steps < 2 * LOG_EVERY:
    raise SystemExit(f'--steps must be at least {2 * LOG_EVERY} (two logged intervals), got {args.steps}')
  load_before = harness.load_average()
  batch_ms = host_batch_ms(args.config)
  if batch_ms is not None:
    print(f'  building a training batch on the host: {batch_ms:.2f} ms (median of 55)', flush=True)
  rows = []
  with tempfile.TemporaryDirectory() as scratch:
    for round_index in range(args.rounds):
      for depth in depths:
        workdir = os.path.join(scratch, f'round{round_index}_depth{depth}')
        rates = run_training(args.config, depth, args.steps, workdir)
        steps, seconds = timed_seconds(rates)
        rows.append({'round': round_index, 'prefetch_batches': depth, 'timed_steps': steps, 'seconds': seconds,
                     'steps_per_second': steps / seconds, 'interval_rates': rates})
        print(f'  round {round_index}, prefetch_batches={depth}: {steps / seconds:.3f} steps/s', flush=True)
  summary = []
  for depth in depths:
    mine = [r for r in rows if r['prefetch_batches'] == depth]
    seconds = statistics.median(r['seconds'] for r in mine)
    summary.append({'prefetch_batches': depth, 'median_seconds': seconds,
                    'steps_per_second': mine[0]['timed_steps'] / seconds})
  for row in summary:
    row['speedup_vs_last'] = summary[-1]['median_seconds'] / row['median_seconds']
  print(f'\n{args.config}: steps {LOG_EVERY + 1}-{args.steps} of each run, median of {args.rounds} round(s)\n')
  print(harness.markdown_table(summary, ['prefetch_batches', 'median_seconds', 'steps_per_second',
                                         'speedup_vs_last'], digits=3))
  return harness.write_results(MODULE, args.out, load_before, {
      'config': args.config, 'steps': args.steps, 'host_batch_ms': batch_ms, 'rounds': rows, 'summary': summary})


if __name__ == '__main__':
  main()
