"""The pure train/eval steps: loss against numpy, learning, non-finite protection, parallel equivalence."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax.alignment_metrics import alignment_counts, alignment_summary
from attention_jax.models import build_model
from attention_jax.training import steps
from attention_jax.training.config import translation_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = {
    'source': np.array([[4, 5, 6, 2, 0], [7, 4, 2, 0, 0]], np.int32),
    'target_in': np.array([[1, 6, 5, 4], [1, 4, 7, 0]], np.int32),
    'target_out': np.array([[6, 5, 4, 2], [4, 7, 2, 0]], np.int32),
}


def _optimizer():
  config = translation_config()
  config.train.learning_rate = 1e-2
  config.train.warmup_steps = 0
  return steps.make_optimizer(config.train)


# One model, optimizer and jitted step for the module: the optimizer is a static field of the state, so a new
# optimizer object per test would recompile the step every time.
MODEL = build_model(dict(encoder='bigru', decoder='bahdanau', scorer='additive', embed_dim=8, hidden_dim=8,
                         scorer_options={'hidden_dim': 8}), source_vocab_size=8, target_vocab_size=8,
                    max_source_length=5)
OPTIMIZER = _optimizer()
STEP = jax.jit(functools.partial(steps.train_step, model=MODEL))


def tiny_state(seed=0):
  state = steps.create_train_state(MODEL, OPTIMIZER, seed, BATCH['source'], BATCH['target_in'])
  return MODEL, state


def test_token_losses_match_numpy_with_label_smoothing():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
  targets = np.array([[1, 4, 0], [2, 2, 3]])
  eps = 0.1
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  smooth = np.full((2, 3, 5), eps / 5) + (1 - eps) * np.eye(5)[targets]
  want = -(smooth * log_p).sum(-1)
  np.testing.assert_allclose(steps.token_losses(jnp.asarray(logits), jnp.asarray(targets), eps), want, rtol=1e-5)


def test_metrics_are_sums_over_real_tokens():
  model, state = tiny_state()
  metrics, attention = steps.eval_step(state, BATCH, model=model)
  logits, _ = model.apply({'params': state.params}, BATCH['source'], BATCH['target_in'])
  log_p = np.asarray(jax.nn.log_softmax(logits))
  mask = BATCH['target_out'] != 0
  nll = -np.take_along_axis(log_p, BATCH['target_out'][..., None], -1)[..., 0]
  assert float(metrics['token_count']) == mask.sum() == 7
  np.testing.assert_allclose(float(metrics['loss_sum']), nll[mask].sum(), rtol=1e-5)
  assert float(metrics['correct_count']) == ((log_p.argmax(-1) == BATCH['target_out']) & mask).sum()
  assert attention.shape == (2, 4, 5)


def test_train_step_learns_and_is_deterministic():
  model, state = tiny_state()
  first_loss = None
  for _ in range(30):
    state, metrics = STEP(state, BATCH)
    loss = float(metrics['loss_sum'] / metrics['token_count'])
    first_loss = first_loss or loss
  assert loss < 0.3 * first_loss
  assert int(state.step) == 30
  _, again = tiny_state()
  for _ in range(30):
    again, _ = STEP(again, BATCH)
  jax.tree.map(np.testing.assert_array_equal, state.params, again.params)


def test_gradient_is_mean_over_tokens_of_the_batch():
  model, state = tiny_state()
  _, metrics = STEP(state, BATCH)

  def mean_loss(params):
    logits, _ = model.apply({'params': params}, BATCH['source'], BATCH['target_in'])
    losses = steps.token_losses(logits, BATCH['target_out'], 0.0)
    mask = BATCH['target_out'] != 0
    return jnp.sum(losses * mask) / mask.sum()

  want = jax.jit(jax.grad(mean_loss))(state.params)
  norm = float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(want))))
  np.testing.assert_allclose(float(metrics['grad_norm']), norm, rtol=1e-5)


def test_nonfinite_step_leaves_state_untouched_and_names_the_step():
  model, state = tiny_state()
  state, _ = STEP(state, BATCH)
  poisoned = state.replace(params=jax.tree.map(lambda x: x.at[..., 0].set(jnp.nan) if x.ndim else x, state.params))
  new_state, metrics = STEP(poisoned, BATCH)
  assert int(metrics['nonfinite_step']) == 1
  assert int(new_state.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new_state.opt_state, poisoned.opt_state)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new_state.params, poisoned.params)
  _, ok = STEP(state, BATCH)
  assert int(ok['nonfinite_step']) == steps.NO_NONFINITE_STEP


def test_sharded_and_pmap_steps_equal_single_device_on_8_devices(tmp_path):
  env = {**os.environ, 'DATA_DIR': str(tmp_path), 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-m', 'tests.helpers.parallel_equivalence'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'OK' in result.stdout


def test_alignment_metrics_by_hand():
  weights = np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]]])
  gold = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 0]]], np.float32)
  mask = np.array([[True, True, True]])
  counts = alignment_counts(weights, gold, mask)
  # A = {(0,0), (1,2), (2,1)}, G = {(0,0), (1,1)}: |A∩G| = 1 -> AER = 1 - 2/5; argmax right on 1 of 2 aligned rows.
  assert counts == {'hypothesis_links': 3.0, 'gold_links': 2.0, 'matched_links': 1.0, 'argmax_hits': 1.0,
                    'aligned_targets': 2.0}
  summary = alignment_summary(counts)
  assert summary['aer'] == pytest.approx(0.6)
  assert summary['argmax_accuracy'] == pytest.approx(0.5)
  perfect = alignment_summary(alignment_counts(gold + 1e-3, gold, np.array([[True, True, False]])))
  assert perfect == {'aer': 0.0, 'argmax_accuracy': 1.0}
