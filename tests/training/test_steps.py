"""The pure train/eval steps: loss against numpy, learning, non-finite protection, parallel equivalence."""

import dataclasses
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from attention_jax.metrics.alignment import alignment_counts, alignment_summary
from attention_jax.models import build_model
from attention_jax.tasks import translation
from attention_jax.training import sequence_losses
from attention_jax.training import steps

ROOT = __file__.rsplit('/tests/', 1)[0]
BATCH = {
    'source': np.array([[4, 5, 6, 2, 0], [7, 4, 2, 0, 0]], np.int32),
    'target_in': np.array([[1, 6, 5, 4], [1, 4, 7, 0]], np.int32),
    'target_out': np.array([[6, 5, 4, 2], [4, 7, 2, 0]], np.int32),
}


def _optimizer():
  config = translation.default_config()
  config.train.learning_rate = 1e-2
  config.train.warmup_steps = 0
  return steps.make_optimizer(config.train)


# One model, optimizer and jitted step for the module: the optimizer is a static field of the state, so a new
# optimizer object per test would recompile the step every time.
MODEL = build_model(dict(encoder='bigru', decoder='bahdanau', scorer='additive', embed_dim=8, hidden_dim=8,
                         scorer_options={'hidden_dim': 8}), source_vocab_size=8, target_vocab_size=8,
                    max_source_length=5)
OPTIMIZER = _optimizer()
STEP = jax.jit(functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=MODEL)))
EVAL = functools.partial(steps.eval_step, eval_fn=functools.partial(translation.sequence_eval, model=MODEL))


def tiny_state(seed=0):
  state = steps.create_train_state(MODEL, OPTIMIZER, seed, BATCH['source'], BATCH['target_in'])
  return MODEL, state


# Logits with PAD (0) targets, a target at the last index, and large magnitudes (log-sum-exp must stay stable).
LOGITS = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32) * np.float32([[[1]], [[30]]])
TARGETS = np.array([[1, 4, 0], [2, 0, 0]])


def one_hot_cross_entropy(logits, targets, eps):
  """The reference: -sum_v labels_v log_softmax_v with labels = (1 - eps) one_hot + eps / V, materialised."""
  vocab = logits.shape[-1]
  labels = jax.nn.one_hot(targets, vocab) * (1 - eps) + eps / vocab
  return -jnp.sum(labels * jax.nn.log_softmax(logits), -1)


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_token_losses_and_gradients_match_the_one_hot_formula(eps):
  x = LOGITS.astype(np.float64)
  log_p = x - x.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  want = -(((1 - eps) * np.eye(5)[TARGETS] + eps / 5) * log_p).sum(-1)         # numpy, float64
  losses = sequence_losses.token_losses(jnp.asarray(LOGITS), jnp.asarray(TARGETS), eps)
  assert losses.shape == (2, 3) and losses.dtype == jnp.float32
  np.testing.assert_allclose(losses, want, rtol=1e-5, atol=1e-5)
  # Gradients of the PAD-masked sum (what train_step differentiates) equal the one-hot formulation's.
  mask = jnp.asarray(TARGETS != 0, jnp.float32)
  masked_sum = lambda fn: jax.grad(lambda z: jnp.sum(fn(z, jnp.asarray(TARGETS), eps) * mask))(jnp.asarray(LOGITS))
  grad, want_grad = masked_sum(sequence_losses.token_losses), masked_sum(one_hot_cross_entropy)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(grad[TARGETS == 0], 0.0)
  if eps:   # smoothing pulls every logit, not just the target's: softmax - (1 - eps) one_hot - eps / V
    softmax = np.exp(log_p)
    np.testing.assert_allclose(grad[0, 0], softmax[0, 0] - (1 - eps) * np.eye(5)[1] - eps / 5, rtol=1e-5, atol=1e-6)


def test_token_correct_is_argmax_equality_with_ties_and_nonfinite_rows():
  nan, inf = np.nan, np.inf
  logits = np.array([[[1, 3, 3, 0], [1, 3, 3, 0], [2, 2, 2, 2], [2, 2, 2, 2]],             # ties: the first wins
                     [[1, nan, 5, nan], [1, nan, 5, nan], [inf, 1, inf, 0], [-inf] * 4],    # NaN / inf rows
                     [[-inf, -inf, -inf, 7], [0, 0, 0, 0.5], [1, nan, 5, nan], [4, 3, 2, 1]]], np.float32)
  targets = np.array([[1, 2, 0, 3], [1, 3, 0, 0], [3, 2, 2, 0]])
  got = np.asarray(sequence_losses.token_correct(jnp.asarray(logits), jnp.asarray(targets)))
  want = np.argmax(logits, -1) == targets
  np.testing.assert_array_equal(got, want)
  assert want.any() and not want.all()
  rng = np.random.default_rng(1)
  logits = rng.integers(0, 3, (4, 6, 5)).astype(np.float32)                     # many ties
  targets = rng.integers(0, 5, (4, 6))
  np.testing.assert_array_equal(sequence_losses.token_correct(jnp.asarray(logits), jnp.asarray(targets)),
                                np.argmax(logits, -1) == targets)


def test_apply_gradients_if_finite():
  params = {'w': jnp.array([1.0, 2.0])}
  state = steps.TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.5), rng=jnp.zeros(2, jnp.uint32))
  grads = {'w': jnp.array([3.0, 4.0])}
  new_state, grad_norm, nonfinite_step = steps.apply_gradients_if_finite(state, grads, jnp.float32(2.0))
  np.testing.assert_allclose(new_state.params['w'], [-0.5, 0.0])
  assert float(grad_norm) == 5.0 and int(nonfinite_step) == steps.NO_NONFINITE_STEP and int(new_state.step) == 1
  for bad_grads, loss in [({'w': jnp.array([jnp.nan, 1.0])}, 2.0), (grads, jnp.inf), (grads, jnp.nan)]:
    kept, _, nonfinite_step = steps.apply_gradients_if_finite(new_state, bad_grads, jnp.float32(loss))
    assert int(nonfinite_step) == 1 and int(kept.step) == 1
    np.testing.assert_array_equal(kept.params['w'], new_state.params['w'])


# XLA's defaults for what the suite's XLA_FLAGS change (conftest.py: LLVM level 0, the elemental emitters). The
# references below are compiled with them, and create_train_state's initialisation with them under its own level 1
# (user_init_options), so that these tests compare the library's level 1 with what a user's XLA compiles.
XLA_DEFAULTS = {'xla_backend_optimization_level': 3, 'xla_cpu_use_fusion_emitters': True}


@pytest.fixture
def user_init_options(monkeypatch):
  """create_train_state's CPU options over XLA_DEFAULTS, as a user's process compiles them."""
  monkeypatch.setattr(steps, 'CPU_INIT_COMPILER_OPTIONS', {**XLA_DEFAULTS, **steps.CPU_INIT_COMPILER_OPTIONS})


@functools.partial(jax.jit, compiler_options=XLA_DEFAULTS)
def _reference_state(key, source, target_in):
  """create_train_state's contract, compiled with XLA_DEFAULTS: params from one half of the seed's key, the run key
  from the other, Adam's moments zero."""
  init_rng, run_rng = jax.random.split(key)
  params = MODEL.init({'params': init_rng, 'dropout': init_rng}, source, target_in)['params']
  return steps.TrainState.create(apply_fn=MODEL.apply, params=params, tx=OPTIMIZER, rng=jax.random.key_data(run_rng))


def _cpu_init_program():
  """The jitted initialisation create_train_state uses here (with the CPU options on a CPU backend)."""
  options = tuple(sorted(steps.CPU_INIT_COMPILER_OPTIONS.items())) if jax.default_backend() == 'cpu' else ()
  return steps._jitted_init(options)


def test_create_train_state_is_bit_identical_to_the_default_compilation_and_compiles_once_for_all_seeds(
    user_init_options):
  init = _cpu_init_program()
  states = [tiny_state(seed)[1] for seed in (0, 1)]
  compiled = init._cache_size()
  for seed, state in zip((0, 1), states):
    reference = _reference_state(jax.random.key(seed), BATCH['source'], BATCH['target_in'])
    assert jax.tree.structure(state) == jax.tree.structure(reference)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
      assert got.dtype == want.dtype and got.shape == want.shape
      np.testing.assert_array_equal(got, want)           # bit for bit, LLVM level 1 included
  assert int(states[0].step) == 0 and states[0].step.dtype == jnp.int32
  assert not np.array_equal(states[0].params['cell']['output']['kernel'], states[1].params['cell']['output']['kernel'])
  states_compiled = steps._jitted_state._cache_size()
  tiny_state(2)
  assert init._cache_size() == compiled                  # a third seed: no new compilation
  assert steps._jitted_state._cache_size() == states_compiled


@pytest.mark.slow
@pytest.mark.parametrize('spec', [
    dict(encoder='bigru', decoder='bahdanau', scorer='additive', embed_dim=32, hidden_dim=64, vocab=41, length=32),
    dict(encoder='gru', decoder='bahdanau', scorer='additive', embed_dim=256, hidden_dim=256, vocab=4000, length=20),
], ids=['default_config_sizes', 'throughput_sizes'])
def test_create_train_state_is_bit_identical_on_larger_models(spec, user_init_options):
  """Level 1's code for larger shapes (vectorised differently) draws the same bits as XLA's default compilation."""
  spec = dict(spec)
  vocab, length = spec.pop('vocab'), spec.pop('length')
  model = build_model(spec, source_vocab_size=vocab, target_vocab_size=vocab, max_source_length=length)
  source, target = np.ones((2, length), np.int32), np.ones((2, length), np.int32)
  state = steps.create_train_state(model, OPTIMIZER, 5, source, target)
  want, _ = jax.jit(steps._init, static_argnums=0, compiler_options=XLA_DEFAULTS)(model, jax.random.key(5), source,
                                                                                  target)
  jax.tree.map(np.testing.assert_array_equal, state.params, want)


def test_create_train_state_compiles_with_the_cpu_init_options(monkeypatch):
  if jax.default_backend() != 'cpu':
    pytest.skip('the options apply on CPU only')
  monkeypatch.setattr(steps, 'CPU_INIT_COMPILER_OPTIONS', {'xla_no_such_option_for_this_test': 1})
  with pytest.raises(Exception, match='xla_no_such_option_for_this_test'):
    tiny_state()
  # Under an enclosing trace (a restore's abstract target) there are no compiler options to apply.
  abstract = jax.eval_shape(lambda: tiny_state(0)[1])
  reference = _reference_state(jax.random.key(0), BATCH['source'], BATCH['target_in'])
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(abstract) == shapes(reference)


class _ScaledDense(nn.Module):
  """A module with an unhashable attribute (a numpy array), so that jit cannot take it as a static argument."""
  scale: np.ndarray

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(x) * self.scale


@dataclasses.dataclass
class _EmptyInit:
  """An optimizer's init as a dataclass with eq and no hash: the optimizer holding it is unhashable."""

  def __call__(self, params):
    return optax.EmptyState()


def test_create_train_state_of_an_unhashable_module_and_optimizer():
  """Initialised by programs compiled for the call (jit's static arguments must be hashable)."""
  model = _ScaledDense(np.array([1.0, 2.0], np.float32))
  optimizer = optax.GradientTransformation(_EmptyInit(), optax.identity().update)
  for unhashable in (model, optimizer):
    with pytest.raises(TypeError):
      hash(unhashable)
  x = np.ones((1, 3), np.float32)
  for tx in (optax.sgd(0.1), optimizer):
    state = steps.create_train_state(model, tx, 3, x)
    init_rng, run_rng = jax.random.split(jax.random.key(3))
    want = jax.jit(lambda x: model.init({'params': init_rng, 'dropout': init_rng}, x)['params'])(x)
    jax.tree.map(np.testing.assert_array_equal, state.params, want)
    np.testing.assert_array_equal(state.rng, jax.random.key_data(run_rng))
    assert int(state.step) == 0 and state.tx is tx and state.apply_fn.__self__ is model


def test_equal_models_share_the_initialisation_and_keep_their_own_apply():
  twins = [build_model(dict(encoder='gru', decoder='luong', scorer='general', embed_dim=4, hidden_dim=4),
                       source_vocab_size=8, target_vocab_size=8, max_source_length=5) for _ in range(2)]
  assert twins[0] == twins[1] and twins[0] is not twins[1]
  states = [steps.create_train_state(twins[0], OPTIMIZER, 0, BATCH['source'], BATCH['target_in'])]
  compiled = _cpu_init_program()._cache_size()
  states.append(steps.create_train_state(twins[1], OPTIMIZER, 0, BATCH['source'], BATCH['target_in']))
  assert _cpu_init_program()._cache_size() == compiled
  assert states[0].apply_fn.__self__ is twins[0] and states[1].apply_fn.__self__ is twins[1]
  jax.tree.map(np.testing.assert_array_equal, states[0].params, states[1].params)


def test_metrics_are_sums_over_real_tokens():
  model, state = tiny_state()
  metrics, attention = EVAL(state, BATCH)
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
    losses = sequence_losses.token_losses(logits, BATCH['target_out'], 0.0)
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


@pytest.mark.slow
def test_application_steps_skip_nonfinite_updates():
  from attention_jax.models.classifier import AttentionPoolingClassifier
  from attention_jax.models.image_to_sequence import ImageToSequence
  from attention_jax.tasks import digit_strips, sentiment
  classifier = AttentionPoolingClassifier(vocab_size=10, num_classes=2, embed_dim=4, hidden_dim=3, attention_dim=4)
  reader = ImageToSequence(vocab_size=6, conv_features=(2,), conv_pool=(True,), embed_dim=3, hidden_dim=4)
  cases = [
      (classifier, functools.partial(steps.train_step, loss_fn=functools.partial(sentiment.classification_loss,
                                                                                model=classifier)),
       {'tokens': np.array([[5, 6, 0], [4, 0, 0]], np.int32), 'label': np.array([0, 1], np.int32)}),
      (reader, functools.partial(steps.train_step, loss_fn=functools.partial(digit_strips.caption_loss, model=reader,
                                                                            penalty=0.5)),
       {'image': np.ones((2, 4, 6, 1), np.float32), 'target_in': np.array([[1, 3], [1, 4]], np.int32),
        'target_out': np.array([[3, 2], [4, 0]], np.int32)}),
  ]
  for model, step, batch in cases:
    inputs = [batch['tokens']] if 'tokens' in batch else [batch['image'], batch['target_in']]
    # Parameters from the shapes alone: an eager or jitted init would cost more than the test itself.
    shapes = jax.eval_shape(model.init, jax.random.key(0), *inputs)['params']
    params = jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape) / 2, shapes)
    state = steps.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(0.1),
                                    rng=jax.random.key_data(jax.random.key(1)))
    step = jax.jit(step)
    updated, metrics = step(state, batch)
    assert int(updated.step) == 1 and np.isfinite(float(metrics['loss_sum']))
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(updated.params), jax.tree.leaves(params)))
    poisoned = updated.replace(params=jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), updated.params))
    kept, metrics = step(poisoned, batch)
    assert not np.isfinite(float(metrics['loss_sum'])) and int(kept.step) == 1
    jax.tree.map(np.testing.assert_array_equal, kept.opt_state, poisoned.opt_state)


@pytest.mark.parametrize('scope', ['steps', pytest.param('all', marks=pytest.mark.slow)])
def test_sharded_and_pmap_steps_equal_single_device_on_8_devices(tmp_path, scope):
  """'steps': fixed-shape batches in every mode; 'all' adds bucketed token-budget batches and seed sweeps."""
  env = {**os.environ, 'DATA_DIR': str(tmp_path), 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-m', 'tests.helpers.parallel_equivalence', scope], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
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
