"""A checkpoint written by another model config: restoring it (to resume, to translate, to average) raises a
one-line ValueError naming the checkpoint, the first differing array and what to do, not orbax's tree dump."""

import json
import os

import jax.numpy as jnp
import optax
import pytest

from attention_jax.training import checkpointing
from attention_jax.training import steps
from tests.helpers.tiny_workdir import write_translation_workdir
from tests.test_cli_errors import assert_clean, run


def state_of(params: dict, step: int = 1):
  return steps.TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-3),
                                 rng=jnp.zeros((2,), jnp.uint32)).replace(step=jnp.asarray(step, jnp.int32))


def dense(features: int, inputs: int = 3):
  return {'dense': {'kernel': jnp.ones((inputs, features)), 'bias': jnp.zeros((features,))}}


def save(workdir, *states):
  checkpoints = checkpointing.Checkpoints(str(workdir), keep=len(states), best_metric=None)
  for state in states:
    checkpoints.save(int(state.step), state, {'next_index': 0})
  checkpoints.wait()
  return checkpoints


def test_resuming_with_other_shapes_names_the_checkpoint_and_the_first_array(tmp_path):
  checkpoints = save(tmp_path, state_of(dense(4)))
  with pytest.raises(ValueError) as error:
    checkpoints.restore_latest(checkpointing.abstract_like(state_of(dense(5))))
  message = str(error.value)
  assert message == (f'The checkpoint {tmp_path / "checkpoints" / "1"} was written by a different model: its arrays '
                     'do not match the model the config builds (params/dense/bias is saved as (4,), expected (5,); '
                     '5 more differ). Use the config it was trained with, or a fresh --workdir.')
  # The matching state still restores.
  state, data_state = checkpoints.restore_latest(checkpointing.abstract_like(state_of(dense(4))))
  assert state.params['dense']['kernel'].shape == (3, 4) and data_state == {'next_index': 0}


def test_an_array_missing_or_extra_is_named(tmp_path):
  checkpoints = save(tmp_path, state_of(dense(4)))
  extra = {**dense(4), 'output': {'kernel': jnp.ones((4, 2))}}
  with pytest.raises(ValueError, match=r'its arrays do not match .*\(params/output/kernel is not in the checkpoint'
                                       r'; 2 more differ\)\. Use the config'):
    checkpoints.restore_latest(checkpointing.abstract_like(state_of(extra)))
  fewer = {'dense': {'kernel': jnp.ones((3, 4))}}
  with pytest.raises(ValueError, match=r'params/dense/bias is only in the checkpoint; 2 more differ'):
    checkpoints.restore_latest(checkpointing.abstract_like(state_of(fewer)))


def test_inference_and_averaging_report_the_mismatch(tmp_path):
  save(tmp_path, state_of(dense(4), step=1), state_of(dense(6), step=2))
  with pytest.raises(ValueError, match=r'checkpoint .*/checkpoints/2 was written by a different model: .*\(params/'
                                       r'dense/bias is saved as \(6,\), expected \(4,\)'):
    checkpointing.restore_for_inference(str(tmp_path), checkpointing.abstract_like(state_of(dense(4))), 'latest')
  with pytest.raises(ValueError, match=r'checkpoint .*/checkpoints/1 was written by a different model: its arrays do '
                                       r'not match the newest checkpoint \(step 2\) .*Average only checkpoints of one'):
    checkpointing.average_checkpoints(str(tmp_path), 2)


def test_translate_with_a_config_edited_after_training(tmp_path):
  """The real entry point on a workdir whose config.json now builds hidden_dim 16 (the checkpoint has 8)."""
  write_translation_workdir(str(tmp_path), checkpoint_steps=(5,))
  config_path = tmp_path / 'config.json'
  config = json.loads(config_path.read_text())
  config['model']['hidden_dim'] = 16
  config_path.write_text(json.dumps(config))
  result = run('experiments.translate', f'--workdir={tmp_path}', '--checkpoint=latest', 'abc')
  assert_clean(result, f'error: The checkpoint {os.path.join(tmp_path, "checkpoints", "5")} was written by a '
               'different model', 'is saved as (', ', expected (', 'Use the config it was trained with, or a fresh '
               '--workdir.')


def test_resuming_another_models_run_fails_cleanly_and_keeps_its_files(tmp_path):
  """experiments.train on a workdir trained with hidden_dim 8, now asked for 16: a two-line error, and config.json
  and vocab.json still describe the checkpoint's model (experiments.translate keeps working)."""
  write_translation_workdir(str(tmp_path), checkpoint_steps=(5,))
  before = {name: (tmp_path / name).read_bytes() for name in ('config.json', 'vocab.json')}
  result = run('experiments.train', '--config=configs/test_tiny.py', f'--workdir={tmp_path}',
               '--config.model.hidden_dim=16')
  assert_clean(result, f'error: The checkpoint {os.path.join(tmp_path, "checkpoints", "5")} was written by a '
               'different model', 'Use the config it was trained with, or a fresh --workdir.')
  assert {name: (tmp_path / name).read_bytes() for name in before} == before
