"""Scaling: data-parallel training over 1/2/4/8 simulated CPU devices, and K seeds in one vmapped step.

    python -m benchmarks.scaling            # full run (several minutes on 2 cores)
    python -m benchmarks.scaling --quick    # smoke test (< 60 s)

Devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (set by this script before jax is imported)
gives 8 CPU devices that share the machine's cores. The throughput benchmark's model (benchmarks.throughput
SPEC) is trained with `training.steps.train_step` under `jax.jit` with the state replicated and the global
batch (64) split over a 1-D 'data' mesh of the first n devices (NamedSharding), and under `jax.pmap`. On a
2-core machine the simulated devices cannot add compute: the table shows the cost of partitioning and
collectives, not the speed-up real devices would give.

Seeds: the default config's model (configs/default.py) trained for K seeds at once with
`training.parallel.Runner(..., vmap_seeds=True)` (jit of vmap over the stacked states), against K runs of the
single-seed jitted step one after another. Speed-up = K x single step time / vmapped step time.
All timings are medians of interleaved repeats.
"""

from __future__ import annotations

import os

FLAG = '--xla_force_host_platform_device_count=8'
if FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + FLAG).strip()

import functools  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from attention_jax.models import build_model  # noqa: E402
from attention_jax.tasks import translation  # noqa: E402
from attention_jax.training import seeds as seeds_lib  # noqa: E402
from attention_jax.training import steps  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks import throughput  # noqa: E402

MODULE = 'benchmarks.scaling'
QUICK_SPEC = {**throughput.SPEC, 'vocab_size': 500, 'embed_dim': 64, 'hidden_dim': 64, 'attention_dim': 64}


def _sharded_step(model, state, batch, devices):
  mesh = Mesh(np.asarray(devices), ('data',))
  replicated = NamedSharding(mesh, PartitionSpec())
  split = NamedSharding(mesh, PartitionSpec('data'))
  train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
  step = jax.jit(train_step)   # not donated: the state is reused
  placed_state = jax.device_put(state, replicated)
  placed_batch = {k: jax.device_put(v, split) for k, v in batch.items()}
  return step, (placed_state, placed_batch)


def _pmap_step(model, state, batch, devices):
  n = len(devices)
  loss_fn = functools.partial(translation.sequence_loss, model=model)
  step = jax.pmap(functools.partial(steps.train_step, loss_fn=loss_fn, axis_name='batch'), axis_name='batch',
                  devices=devices)
  placed_state = _replicate(state, devices)
  placed_batch = {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in batch.items()}
  return step, (placed_state, placed_batch)


def _replicate(tree, devices):
  """A pytree with a leading device axis, one copy per device (what pmap expects)."""
  mesh = Mesh(np.asarray(devices), ('batch',))
  sharding = NamedSharding(mesh, PartitionSpec('batch'))
  return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))),
                                               sharding), tree)


def device_table(spec: dict, counts, modes, repeats: int) -> list[dict]:
  model = build_model(throughput.model_config(spec), source_vocab_size=spec['vocab_size'],
                      target_vocab_size=spec['vocab_size'], max_source_length=spec['source_length'])
  batch = throughput.make_batches(spec, 1, seed=2)[0]
  state = steps.create_train_state(model, optax.adam(spec['learning_rate']), 0, batch['source'], batch['target_in'])
  calls = {}
  for mode in modes:
    for n in counts:
      make = _sharded_step if mode == 'sharded' else _pmap_step
      step, args = make(model, state, batch, jax.devices()[:n])
      calls[(mode, n)] = (step, args)
      harness.block(step(*args))     # compile before any timing
      print(f'  compiled {mode} on {n} device(s)', flush=True)
  times = harness.time_interleaved(calls, repeats=repeats, warmup=1)
  tokens = spec['batch_size'] * spec['target_length']
  rows = []
  for (mode, n), t in times.items():
    rows.append({'mode': mode, 'devices': n, 'global_batch': spec['batch_size'], 'median_step_ms': t['median_ms'],
                 'tokens_per_s': tokens / (t['median_ms'] / 1e3)})
  base = {r['mode']: r['tokens_per_s'] for r in rows if r['devices'] == 1}
  for row in rows:
    row['vs_1_device'] = row['tokens_per_s'] / base[row['mode']] if row['mode'] in base else None
  return rows


def _default_config_model(quick: bool):
  """The default config's model and a batch of its shapes (the dataset is built small, in a temp dir)."""
  config = harness.load_config('configs/default.py')
  config.data.data_dir = tempfile.mkdtemp(prefix='bench_data_')
  config.data.num_train, config.data.num_eval = 64, 16
  task, model = translation.build(config)
  batch_size = 16 if quick else int(config.train.batch_size)
  batch = next(iter(task.train_iterator(batch_size=batch_size, seed=0)))
  return config, model, {k: np.asarray(batch[k]) for k in ('source', 'target_in', 'target_out')}


def seeds_table(seed_counts, repeats: int, quick: bool) -> tuple[list[dict], dict]:
  config, model, batch = _default_config_model(quick)
  optimizer = steps.make_optimizer(config.train)
  single_state = steps.create_train_state(model, optimizer, 0, batch['source'], batch['target_in'])
  train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
  single = jax.jit(train_step)
  calls = {'single': (single, (single_state, batch))}
  for k in seed_counts:
    states = seeds_lib.init_seed_states(model, optimizer, list(range(k)), batch['source'], batch['target_in'])
    train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
    vmapped = jax.jit(jax.vmap(train_step, in_axes=(0, None)))
    calls[k] = (vmapped, (states, batch))
    harness.block(vmapped(states, batch))
    print(f'  compiled vmapped step for K={k}', flush=True)
  times = harness.time_interleaved(calls, repeats=repeats, warmup=1)
  single_ms = times['single']['median_ms']
  rows = [{'K': k, 'vmapped_step_ms': times[k]['median_ms'], 'sequential_K_steps_ms': k * single_ms,
           'speedup': k * single_ms / times[k]['median_ms']} for k in seed_counts]
  model_desc = {k: config.model[k] for k in ('encoder', 'decoder', 'scorer', 'embed_dim', 'hidden_dim')}
  model_desc.update(batch_size=batch['source'].shape[0], source_length=batch['source'].shape[1],
                    target_length=batch['target_in'].shape[1], single_step_ms=single_ms)
  return rows, model_desc


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/scaling.json')
  parser.add_argument('--repeats', type=int, default=None)
  args = parser.parse_args(argv)
  repeats = args.repeats or (3 if args.quick else 15)
  spec = QUICK_SPEC if args.quick else throughput.SPEC
  counts = (1, 2) if args.quick else (1, 2, 4, 8)
  modes = ('sharded',) if args.quick else ('sharded', 'pmap')
  seed_counts = (2,) if args.quick else (1, 2, 4, 8)
  info = harness.machine_info()
  print(f'# scaling on {info["cpu"]} ({info["cpu_count"]} cores), {jax.device_count()} simulated CPU devices, '
        f'median of {repeats}\n', flush=True)
  devices = device_table(spec, counts, modes, repeats)
  seeds, seed_model = seeds_table(seed_counts, repeats, args.quick)
  command = harness.rerun_command(MODULE)
  print(f'\n## Data parallel over simulated CPU devices (throughput model, global batch {spec["batch_size"]}; '
        f'median of {repeats}, interleaved)\n')
  print(harness.markdown_table(devices, ['mode', 'devices', 'global_batch', 'median_step_ms', 'tokens_per_s',
                                         'vs_1_device'], digits=2))
  print(f'\n## K seeds in one vmapped step vs K sequential steps (default config model: {seed_model}; '
        f'median of {repeats}, interleaved)\n')
  print(harness.markdown_table(seeds, ['K', 'vmapped_step_ms', 'sequential_K_steps_ms', 'speedup']))
  print(f'\nrerun: {command}')
  result = {'machine': info, 'command': command, 'repeats': repeats, 'spec': spec, 'devices': devices,
            'seeds': seeds, 'seed_model': seed_model}
  harness.write_json(args.out, result)
  return result


if __name__ == '__main__':
  main()
