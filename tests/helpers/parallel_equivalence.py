"""Run with 8 simulated CPU devices: one and three training steps in 'sharded', 'pmap' and 'single' modes
from the same initial state and batches must give the same parameters; so must a seed-stacked sweep state
(3 seeds: the batch split 8 ways; 4 seeds: a 4 x 2 seed-by-data mesh) against the one-device vmapped sweep.
Prints 'OK <max abs diff>'. With the argument 'steps', only the fixed-shape batches in every mode."""

import os
import sys

os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'

import jax  # noqa: E402
import numpy as np  # noqa: E402

from attention_jax.studies import compare  # noqa: E402
from attention_jax.training import parallel  # noqa: E402
from attention_jax.training import seeds as seeds_lib  # noqa: E402
from attention_jax.training import steps  # noqa: E402
from attention_jax.tasks import translation  # noqa: E402
from configs import test_tiny  # noqa: E402


def main():
  assert jax.device_count() == 8, jax.devices()
  config = test_tiny.get_config()
  config.data.data_dir = os.environ['DATA_DIR']
  config.train.batch_size = 16
  task, model = translation.build(config)
  batches = task.train_iterator(batch_size=16, seed=0)
  data = [next(batches) for _ in range(3)]
  # Uneven token counts per device (the last examples are cut short) exercise the psum-then-divide rule.
  data[0]['target_out'][12:, 3:] = 0
  worst = compare_modes(config, task, model, data)
  if sys.argv[1:] == ['steps']:
    print(f'OK {worst:.3g}')
    return
  # Length-bucketed token-budget batches: a different shape at every step, the same on every device.
  config.data.bucket_boundaries = (4, 5)
  task, model = translation.build(config)
  bucketed = task.train_iterator(batch_size=16, seed=0, batch_type='tokens', batch_tokens=96, batch_multiple=8)
  data = [next(bucketed) for _ in range(5)]
  shapes = {batch['source'].shape for batch in data}
  assert len(shapes) >= 2 and all(len(batch['source']) % 8 == 0 for batch in data), shapes
  worst = max(worst, compare_modes(config, task, model, data))
  for seed_count, mesh_shape in ((3, (1, 8)), (4, (4, 2))):
    worst = max(worst, compare_seed_sweeps(config, task, model, data, seed_count, mesh_shape))
  try:
    parallel.check_batch_size('sharded', 12)
    raise AssertionError('batch 12 on 8 devices was accepted')
  except ValueError as e:
    assert 'not divisible by the 8 devices' in str(e), e
  print(f'OK {worst:.3g}')


def compare_modes(config, task, model, data) -> float:
  """Trains on `data` in every parallel mode from the same state; asserts equal losses and parameters."""
  finals = {}
  for mode in parallel.PARALLEL_MODES:
    config.train.label_smoothing = 0.1
    runner = translation.make_runner(config, model, mode=mode)
    state = runner.put_state(translation.initial_state(config, task, model))
    losses = []
    for batch in data:
      state, metrics = runner.train_step(state, batch)
      losses.append(float(metrics['loss_sum']) / float(metrics['token_count']))
    finals[mode] = (jax.device_get(runner.get_state(state).params), losses)
  reference, ref_losses = finals['single']
  worst = 0.0
  for mode, (params, losses) in finals.items():
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), params, reference))
    worst = max(worst, max(diffs))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), params, reference)
  return worst


def compare_seed_sweeps(config, task, model, data, seed_count: int, mesh_shape) -> float:
  """The comparison's seed-stacked step sharded over 8 devices equals it on one device, seed by seed."""
  source = np.zeros((1, task.max_source_length), np.int32)
  target = np.zeros((1, task.max_target_length), np.int32)
  finals = {}
  for mode in ('single', 'sharded'):
    config.train.parallel = mode
    runner = compare.make_seed_runner(config, model)
    state = runner.put_state(seeds_lib.init_seed_states(model, steps.make_optimizer(config.train),
                                                        list(range(seed_count)), source, target))
    if mode == 'sharded':
      assert tuple(runner.mesh.devices.shape) == mesh_shape, runner.mesh
      assert len(state.step.sharding.device_set) == 8
    losses = []
    for batch in data:
      state, metrics = runner.train_step(state, batch)
      losses.append(np.asarray(metrics['loss_sum']) / np.asarray(metrics['token_count']))
    finals[mode] = (jax.device_get(state.params), np.stack(losses))
  (sharded, sharded_losses), (single, single_losses) = finals['sharded'], finals['single']
  assert sharded_losses.shape == (len(data), seed_count)
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), sharded, single)
  return max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), sharded, single)))


if __name__ == '__main__':
  main()
