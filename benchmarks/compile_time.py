"""Compile time of the training step: the first step of the default config (configs/default.py), compiled afresh
and loaded from the persistent compilation cache that the entry points turn on.

    python -m benchmarks.compile_time            # 3 + 3 + 1 + 3 fresh processes per model (~3-8 minutes)
    python -m benchmarks.compile_time --quick    # 1 + 1 + 1 + 1 fresh processes, default config only (< 2 min)

Every measurement runs in a fresh Python process set up as the entry points set one up, which times:
  setup        building the model (the default config also generates its data) and its train state
  init         of which `create_train_state` (the initialisation's compilation: LLVM level 1 on CPU,
               `steps.CPU_INIT_COMPILER_OPTIONS`); `init_s_xla_default` is the same in processes interleaved
               with these that compile it with XLA's default options; `second_seed_init_s` is the state of a
               second seed in the same process (no new compilation)
  trace+lower  `jax.jit(train_step).lower(state, batch)` (Python tracing of the Flax model and the scans)
  compile      `.compile()` (XLA)
  first step   trace+lower, compile and running the step once (what the first logged step waits for)
  next step    a second call (the steady state, for scale)
First with no compilation cache (`--repeats` processes: the target, first step under 10 s); then with a
persistent cache in a new temporary directory (`attention_jax.compilation_cache`, as `python -m experiments.*`
runs): one process that fills it, then `--repeats` that load from it (`cached_*` columns: a second run of the
same config on the same machine; `cache_hits` counts the programs loaded, the train state's and the step's).
Models: the default config (BiGRU 64 + Bahdanau + additive, date task, batch 64) and the throughput
benchmark's model (GRU 256, vocabulary 4000, batch 64 x 20).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time

from benchmarks import harness

MODULE = 'benchmarks.compile_time'
MODELS = ('default_config', 'throughput_model')


def _setup(model_name: str):
  """(model, seed 0's train state, batch, seconds the first create_train_state took, seconds a second seed's
  took) for one of MODELS, with the jitted step not yet traced."""
  import jax
  import optax
  from attention_jax.models import build_model
  from attention_jax.tasks import translation
  from attention_jax.training import steps
  from benchmarks import throughput
  if model_name == 'default_config':
    config = harness.load_config('configs/default.py')
    config.data.data_dir = tempfile.mkdtemp(prefix='bench_data_')
    config.data.num_train, config.data.num_eval = 64, 16
    task, model = translation.build(config)
    batch = next(iter(task.train_iterator(batch_size=int(config.train.batch_size), seed=0)))
    batch = {k: batch[k] for k in ('source', 'target_in', 'target_out')}

    def create(seed):
      config.seed = seed
      return translation.initial_state(config, task, model)
  else:
    spec = throughput.SPEC
    model = build_model(throughput.model_config(spec), source_vocab_size=spec['vocab_size'],
                        target_vocab_size=spec['vocab_size'], max_source_length=spec['source_length'])
    batch = throughput.make_batches(spec, 1)[0]
    optimizer = optax.adam(spec['learning_rate'])
    create = lambda seed: steps.create_train_state(model, optimizer, seed, batch['source'], batch['target_in'])
  timed = []
  for seed in (1, 0):     # the state measured is seed 0's, the default config's seed
    start = time.perf_counter()
    state = jax.block_until_ready(create(seed))
    timed.append(time.perf_counter() - start)
  return model, state, batch, timed[0], timed[1]


def measure_once(model_name: str, cache_dir: str | None = None, xla_default_init: bool = False) -> dict:
  """Run in a fresh process set up as experiments/ sets up its processes (`cpu_runtime.configure()`, which also
  chooses XLA compiler flags): setup, trace+lower, compile, first and second step times (seconds), with the
  persistent compilation cache in cache_dir, or none; with xla_default_init, the train state's initialisation is
  compiled with XLA's default options instead of `steps.CPU_INIT_COMPILER_OPTIONS`."""
  import functools
  from attention_jax import cpu_runtime
  cpu_runtime.configure()
  import jax
  from attention_jax.tasks import translation
  from attention_jax.training import steps
  hits = []
  if cache_dir:
    jax.config.update('jax_compilation_cache_dir', cache_dir)
    jax.monitoring.register_event_listener(
        lambda event, **kwargs: hits.append(event) if event == '/jax/compilation_cache/cache_hits' else None)
  else:
    jax.config.update('jax_enable_compilation_cache', False)
  if xla_default_init:
    steps.CPU_INIT_COMPILER_OPTIONS = {}
  setup_start = time.perf_counter()
  model, state, batch, init_s, second_seed_init_s = _setup(model_name)
  setup_s = time.perf_counter() - setup_start - second_seed_init_s
  batch = jax.device_put(batch)
  train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
  step = jax.jit(train_step, donate_argnums=0)
  start = time.perf_counter()
  lowered = step.lower(state, batch)
  traced = time.perf_counter()
  compiled = lowered.compile()
  built = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  second = time.perf_counter()
  return {'setup_s': setup_s, 'init_s': init_s, 'second_seed_init_s': second_seed_init_s,
          'trace_lower_s': traced - start, 'compile_s': built - traced, 'first_step_s': first - start,
          'next_step_ms': 1e3 * (second - first), 'cache_hits': len(hits),
          'params': int(sum(x.size for x in jax.tree.leaves(state.params))),
          'batch_shapes': {k: list(v.shape) for k, v in batch.items()}}


def _fresh_process(model_name: str, cache_dir: str | None = None, xla_default_init: bool = False) -> dict:
  return harness.run_worker(MODULE, ['--measure', model_name] + (['--cache_dir', cache_dir] if cache_dir else []) +
                            (['--xla_default_init'] if xla_default_init else []))


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/compile_time.json')
  parser.add_argument('--repeats', type=int, default=None, help='fresh processes per model')
  parser.add_argument('--measure', default=None, help='(internal) measure one model in this process')
  parser.add_argument('--cache_dir', default=None, help='(internal) with --measure: the compilation cache to use')
  parser.add_argument('--xla_default_init', action='store_true',
                      help="(internal) with --measure: compile the initialisation with XLA's default options")
  args = parser.parse_args(argv)
  if args.measure:
    harness.print_worker_result(measure_once(args.measure, args.cache_dir, args.xla_default_init))
    return {}
  repeats = args.repeats or (1 if args.quick else 3)
  models = MODELS[:1] if args.quick else MODELS
  info = harness.machine_info()
  print(f'# train-step compile time on {info["cpu"]} ({info["cpu_count"]} cores), median of {repeats} fresh '
        'processes\n', flush=True)
  rows = []
  for model_name in models:
    runs, default_init_runs = [], []
    for i in range(repeats):      # interleaved with processes that compile the initialisation at XLA's defaults
      runs.append(_fresh_process(model_name))
      default_init_runs.append(_fresh_process(model_name, xla_default_init=True))
      print(f'  {model_name} run {i + 1}: first step {runs[-1]["first_step_s"]:.2f} s, initialisation '
            f'{runs[-1]["init_s"]:.2f} s (XLA\'s default options: {default_init_runs[-1]["init_s"]:.2f} s)', flush=True)
    row = {'model': model_name, 'params': runs[0]['params'],
           'batch': 'x'.join(map(str, runs[0]['batch_shapes']['source'])) + ' -> ' +
                    'x'.join(map(str, runs[0]['batch_shapes']['target_in'])),
           'runs': runs, 'xla_default_init_runs': default_init_runs}
    for key in ('setup_s', 'init_s', 'second_seed_init_s', 'trace_lower_s', 'compile_s', 'first_step_s',
                'next_step_ms'):
      row[key] = statistics.median(r[key] for r in runs)
    row['init_s_xla_default'] = statistics.median(r['init_s'] for r in default_init_runs)
    row['under_10_s'] = row['first_step_s'] < 10.0
    cache_dir = tempfile.mkdtemp(prefix='compile_time_cache_')
    try:
      row['filling_run'] = _fresh_process(model_name, cache_dir)
      cached = [_fresh_process(model_name, cache_dir) for _ in range(repeats)]
    finally:
      shutil.rmtree(cache_dir, ignore_errors=True)
    print(f'  {model_name} from the cache: first step ' + ', '.join(f'{r["first_step_s"]:.2f}' for r in cached) +
          ' s', flush=True)
    row['cached_runs'] = cached
    for key in ('setup_s', 'first_step_s'):
      row[f'cached_{key}'] = statistics.median(r[key] for r in cached)
    row['cache_hits'] = min(r['cache_hits'] for r in cached)
    rows.append(row)
  command = harness.rerun_command(MODULE)
  print(f'\n## First training step (median of {repeats} fresh processes)\n')
  print(harness.markdown_table(rows, ['model', 'params', 'batch', 'setup_s', 'trace_lower_s', 'compile_s',
                                      'first_step_s', 'next_step_ms', 'under_10_s', 'cached_setup_s',
                                      'cached_first_step_s', 'cache_hits']))
  print(f'\n## Building the train state (median of {repeats} fresh processes each, interleaved)\n')
  print(harness.markdown_table(rows, ['model', 'init_s', 'init_s_xla_default', 'second_seed_init_s']))
  print(f'\nrerun: {command}')
  result = {'machine': info, 'command': command, 'repeats': repeats, 'rows': rows}
  harness.write_json(args.out, result)
  return result


if __name__ == '__main__':
  main()
