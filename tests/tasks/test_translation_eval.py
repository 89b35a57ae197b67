"""Evaluation and decoding over length-bucketed batches give the numbers and outputs of fixed-shape batches, in the
split's order: the models ignore padding, so bucketing only removes work."""

import numpy as np
import pytest

from attention_jax import data
from attention_jax.tasks import translation
from attention_jax.tasks import translation_eval


@pytest.fixture(scope='module')
def tasks_and_model(tmp_path_factory):
  config = translation.default_config('copy')
  config.data.update(data_dir=str(tmp_path_factory.mktemp('data')), num_train=64, num_eval=40, max_length=9,
                     alphabet_size=5)
  config.model.update(embed_dim=8, hidden_dim=8, scorer_options={'hidden_dim': 8})
  config.eval.update(batch_size=8, validation_bleu=True)
  config.train.parallel = 'single'
  fixed = data.make_task(config.data)
  config.data.bucket_boundaries = (4, 7)
  bucketed, model = translation.build(config)
  # A briefly trained model, so that outputs end with EOS well before either length cap.
  config.train.update(learning_rate=1e-2, warmup_steps=0)
  runner = translation.make_runner(config, model)
  state = runner.put_state(translation.initial_state(config, bucketed, model))
  batches = fixed.train_iterator(batch_size=16, seed=0)
  for _ in range(150):
    state, _ = runner.train_step(state, next(batches))
  return config, fixed, bucketed, model, state


@pytest.mark.parametrize('beam_size', [1, pytest.param(3, marks=pytest.mark.slow)])
def test_bucketed_decoding_equals_fixed_decoding_in_order(tasks_and_model, beam_size):
  config, fixed, bucketed, model, state = tasks_and_model
  config.eval.beam_size = beam_size
  assert len(bucketed.decode_batches('test', batch_size=8)) > len(fixed.eval_batches('test', batch_size=8)) - 1
  want = translation_eval.decode_split(model, state.params, fixed, 'test', config.eval)
  got = translation_eval.decode_split(model, state.params, bucketed, 'test', config.eval)
  assert got == want and len(got) == 40
  assert sum(len(h) < 2 * len(s) for h, (s, _) in zip(got, fixed.examples('test'))) > 30   # EOS reached


def test_bucketed_evaluation_equals_fixed_evaluation(tasks_and_model):
  config, fixed, bucketed, model, state = tasks_and_model
  config.eval.beam_size = 1
  runner = translation.make_runner(config, model)
  want = translation_eval.evaluate(runner, state, fixed, model, 'test', config, with_decoding=True)
  got = translation_eval.evaluate(runner, state, bucketed, model, 'test', config, with_decoding=True)
  assert want.keys() == got.keys() and {'loss', 'aer', 'bleu', 'chrf', 'exact_match'} <= set(got)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-6, err_msg=key)
