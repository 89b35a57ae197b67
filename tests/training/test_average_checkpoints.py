"""Checkpoint averaging: the mean of the last N checkpoints' parameters, written where restore_for_inference and
experiments.translate --checkpoint=averaged read it; the experiments.average_checkpoints entry point."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from attention_jax.training import checkpointing
from attention_jax.training import steps
from tests.helpers.tiny_workdir import write_translation_workdir
from tests.test_cli_errors import assert_clean, run

STEPS = (1, 2, 3, 4)


def small_state(step: int):
  """A TrainState with float32 and bfloat16 parameters drawn from `step`, Adam state and rng [step, 0]."""
  rng = np.random.default_rng(step)
  params = {'dense': {'kernel': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                      'bias': jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
            'scale': jnp.asarray(rng.normal(size=(4,)), jnp.bfloat16)}
  state = steps.TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-3),
                                  rng=jnp.asarray([step, 0], jnp.uint32))
  return state.replace(step=jnp.asarray(step, jnp.int32))


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """(workdir with checkpoints at STEPS, the abstract state)."""
  workdir = str(tmp_path_factory.mktemp('run'))
  checkpoints = checkpointing.Checkpoints(workdir, keep=len(STEPS), best_metric=None)
  for step in STEPS:
    checkpoints.save(step, small_state(step), {'next_index': 10 * step})
  checkpoints.wait()
  checkpoints.close()
  return workdir, checkpointing.abstract_like(small_state(0))


def saved_params(workdir, step, abstract):
  """The params of workdir/checkpoints/<step>, restored with orbax directly."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  return jax.device_get(restored['state'].params)


def assert_mean_of(params, workdir, chosen, abstract):
  """Every leaf of `params` is the float32 mean of the saved leaves of `chosen`, in the leaf's saved dtype."""
  saved = [saved_params(workdir, step, abstract) for step in chosen]
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
    values = [np.asarray(_at(params_of_step, path)) for params_of_step in saved]
    expected = np.mean(np.stack([v.astype(np.float32) for v in values]), axis=0)
    assert leaf.dtype == values[0].dtype, path
    tolerance = 1e-2 if leaf.dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(leaf, np.float32), expected, rtol=tolerance, atol=tolerance,
                               err_msg=str(path))
    assert not np.array_equal(leaf, values[-1]), path        # not the newest unchanged


def _at(tree, path):
  """The leaf of a nested dict at a jax key path."""
  for key in path:
    tree = tree[key.key]
  return tree


def test_the_average_is_the_mean_of_each_saved_params_leaf(run_dir):
  workdir, abstract = run_dir
  averaged = checkpointing.average_checkpoints(workdir, 3, abstract)
  assert averaged.steps == [2, 3, 4] and averaged.data_state == {'next_index': 40}
  assert_mean_of(averaged.state.params, workdir, [2, 3, 4], abstract)
  newest = small_state(4)
  assert int(averaged.state.step) == 4 and np.array_equal(averaged.state.rng, newest.rng)
  for ours, theirs in zip(jax.tree.leaves(averaged.state.opt_state), jax.tree.leaves(newest.opt_state)):
    np.testing.assert_array_equal(ours, theirs)
  # Without an abstract state: the tree as saved (dicts), the same parameters.
  raw = checkpointing.average_checkpoints(workdir, 3)
  for ours, theirs in zip(jax.tree.leaves(raw.state['params']), jax.tree.leaves(averaged.state.params)):
    np.testing.assert_array_equal(ours, theirs)
  # Written to workdir/averaged (replacing an earlier average), it is what restore_for_inference gives.
  output_dir = os.path.join(workdir, checkpointing.AVERAGED)
  checkpointing.write_checkpoint(output_dir, 3, averaged.state, averaged.data_state)
  path = checkpointing.write_checkpoint(output_dir, 4, raw.state, raw.data_state)
  assert path == os.path.join(output_dir, '4') and os.listdir(output_dir) == ['4']
  restored = checkpointing.restore_for_inference(workdir, abstract, checkpointing.AVERAGED)
  for ours, theirs in zip(jax.tree.leaves(restored), jax.tree.leaves(averaged.state)):
    np.testing.assert_array_equal(ours, theirs)
  shutil.rmtree(output_dir)


def test_averaging_the_last_one_gives_the_newest_params_exactly(run_dir):
  workdir, abstract = run_dir
  averaged = checkpointing.average_checkpoints(workdir, 1, abstract)
  assert averaged.steps == [4]
  for ours, theirs in zip(jax.tree.leaves(averaged.state.params), jax.tree.leaves(saved_params(workdir, 4, abstract))):
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_asking_for_more_checkpoints_than_kept_names_the_count(run_dir, tmp_path):
  workdir, abstract = run_dir
  with pytest.raises(ValueError, match=r'holds 4 \(steps 1, 2, 3, 4\)\. config\.train\.keep_checkpoints'):
    checkpointing.average_checkpoints(workdir, 5, abstract)
  with pytest.raises(ValueError, match='must be >= 1'):
    checkpointing.average_checkpoints(workdir, 0, abstract)
  with pytest.raises(FileNotFoundError, match='No checkpoint in .* to average'):
    checkpointing.average_checkpoints(str(tmp_path), 1, abstract)
  with pytest.raises(FileNotFoundError, match='experiments.average_checkpoints'):
    checkpointing.restore_for_inference(workdir, abstract, checkpointing.AVERAGED)


@pytest.fixture(scope='module')
def translation_run(tmp_path_factory):
  """(workdir of a translation run with checkpoints 5, 10, 15, {step: saved state})."""
  workdir = str(tmp_path_factory.mktemp('translation'))
  return workdir, write_translation_workdir(workdir, (5, 10, 15))


def test_the_command_line_averages_into_workdir_averaged(translation_run):
  workdir, states = translation_run
  result = run('experiments.average_checkpoints', f'--workdir={workdir}', '--last=2')
  assert result.returncode == 0, result.stderr[-3000:]
  output_dir = os.path.join(workdir, checkpointing.AVERAGED)
  assert result.stdout.strip() == f'averaged the parameters of steps 10, 15 into {os.path.join(output_dir, "15")}'
  abstract = checkpointing.abstract_like(states[15])
  restored = checkpointing.restore_for_inference(workdir, abstract, checkpointing.AVERAGED)
  assert int(restored.step) == 15
  for path, leaf in jax.tree_util.tree_flatten_with_path(restored.params)[0]:
    expected = (np.asarray(_at(states[10].params, path)) + np.asarray(_at(states[15].params, path))) / 2
    np.testing.assert_allclose(leaf, expected, rtol=1e-6, atol=1e-7, err_msg=str(path))


def test_the_command_line_on_a_workdir_without_checkpoints(tmp_path):
  assert_clean(run('experiments.average_checkpoints', f'--workdir={tmp_path}'), 'No checkpoint in',
               'python -m experiments.train')


def test_translate_reads_the_averaged_checkpoint(translation_run, tmp_path):
  """A workdir with only config.json, vocab.json and averaged/: translating from it cannot fall back on another."""
  workdir, _ = translation_run
  only_averaged = tmp_path / 'run'
  only_averaged.mkdir()
  for name in ('config.json', 'vocab.json'):
    shutil.copy(os.path.join(workdir, name), only_averaged / name)
  averaged = checkpointing.average_checkpoints(workdir, 3)
  checkpointing.write_checkpoint(str(only_averaged / checkpointing.AVERAGED), averaged.steps[-1], averaged.state,
                                 averaged.data_state)
  result = run('experiments.translate', f'--workdir={only_averaged}', '--checkpoint=averaged',
               f'--output_dir={tmp_path / "png"}', 'abc')
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(result.stdout.strip().splitlines()) == 1 and result.stdout.startswith('abc\t')
