"""Local (local_m, local_p), monotonic and coverage attention inside both decoders: step-by-step == teacher
forcing, the papers' formulas on the decoders' own scores, hard monotonic decoding, and tiny models whose
attention losses do what they are for."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attention_jax import decoding
from attention_jax.models import Seq2Seq
from attention_jax.special_tokens import PAD_ID
from attention_jax.tasks import translation
from tests.models.test_seq2seq import SOURCE, TARGET_IN, make, stepwise

S_TRUE = np.asarray((SOURCE != 0).sum(1))       # real source tokens incl. EOS: [5, 3]


def soft_stepwise(model, variables, source, target_in):
  """The decoder's step function with hard=False (as in teacher forcing), one step at a time."""
  def step(module, carry, tokens, memory):
    carry, (logits, weights) = module.cell(carry, module.target_embed(tokens), memory, train=False, hard=False)
    return carry, logits, weights
  memory = model.apply(variables, source, method=Seq2Seq.encode)
  carry = model.apply(variables, memory, method=Seq2Seq.initial_state)
  outputs = []
  for t in range(target_in.shape[1]):
    carry, logits, weights = model.apply(variables, carry, target_in[:, t], memory, method=step)
    outputs.append((logits, weights))
  return jnp.stack([o[0] for o in outputs], 1), jnp.stack([o[1] for o in outputs], 1)


def gaussian(center, window, length=SOURCE.shape[1]):
  """exp(-(s - p_t)^2 / (2 (D / 2)^2)) for centres [..., 1] -> [..., S]."""
  s = np.arange(length)
  return np.exp(-(s - center) ** 2 / (2 * (window / 2) ** 2))


slow = pytest.mark.slow
MECHANISMS = [
    ('bahdanau', 'additive', True, dict(locality='local_m', local_window=2)),
    pytest.param('bahdanau', 'general', True, dict(locality='local_p', local_window=1), marks=slow),
    pytest.param('luong', 'general', True, dict(locality='local_p', local_window=2), marks=slow),
    pytest.param('luong', 'dot', False, dict(locality='local_m', local_window=1), marks=slow),  # parallel Luong
    pytest.param('luong', 'general', False, dict(locality='local_p', local_window=2), marks=slow),                  # parallel Luong
    pytest.param('bahdanau', 'additive', True, dict(weighting='monotonic', monotonic_bias_init=0.0), marks=slow),
    pytest.param('luong', 'general', False, dict(weighting='monotonic', monotonic_bias_init=0.0), marks=slow),
    ('bahdanau', 'coverage', True, {}),
    pytest.param('luong', 'coverage', True, dict(locality='local_p', local_window=2), marks=slow),
]


@pytest.mark.parametrize('decoder,scorer,input_feeding,options', MECHANISMS)
def test_step_by_step_equals_teacher_forcing_and_gradients_flow(decoder, scorer, input_feeding, options):
  model = make('bigru', decoder, scorer, input_feeding=input_feeding, **options)
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  logits, weights = model.apply(variables, SOURCE, TARGET_IN)
  step_logits, step_weights = soft_stepwise(model, variables, SOURCE, TARGET_IN)
  np.testing.assert_allclose(step_logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(step_weights, weights, rtol=1e-5, atol=1e-6)
  w = np.asarray(weights)
  assert np.all(w >= 0) and np.all(w.sum(-1) <= 1 + 1e-5)
  assert np.all(w[np.broadcast_to(np.asarray(SOURCE == 0)[:, None, :], w.shape)] == 0.0)
  if options.get('locality', 'global') != 'global':       # nothing outside [p_t - D, p_t + D]: at most 2D + 1
    assert np.all((w > 0).sum(-1) <= 2 * options['local_window'] + 1)

  def loss(params):
    out, _ = model.apply({'params': params}, SOURCE, TARGET_IN, train=True, rngs={'dropout': jax.random.key(1)})
    return -jnp.mean(jax.nn.log_softmax(out)[..., 3])

  grads = jax.grad(loss)(variables['params'])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  if options.get('locality') == 'local_p':                 # the predicted position learns
    assert np.abs(grads['cell']['W_p']['kernel']).max() > 0 and np.abs(grads['cell']['v_p']['kernel']).max() > 0
  if options.get('weighting') == 'monotonic':              # and so does the energy bias r
    assert abs(float(grads['cell']['monotonic_bias'])) > 0


def test_local_m_is_the_global_softmax_times_a_gaussian_at_t():
  """Luong eq. 10 on the decoder's own scores: with D >= S the window is everything, so local-m's weights are the
  global model's (same parameters; Luong without input feeding, so the queries do not depend on attention) times
  the Gaussian centred on the target step t."""
  window = SOURCE.shape[1]
  local = make('bigru', 'luong', 'general', input_feeding=False, locality='local_m', local_window=window)
  variables = local.init(jax.random.key(3), SOURCE, TARGET_IN)
  _, w_local = local.apply(variables, SOURCE, TARGET_IN)
  _, w_global = make('bigru', 'luong', 'general', input_feeding=False).apply(variables, SOURCE, TARGET_IN)
  t = np.arange(TARGET_IN.shape[1])[None, :, None]
  np.testing.assert_allclose(w_local, np.asarray(w_global) * gaussian(t, window), rtol=1e-5, atol=1e-7)


def test_local_p_predicts_s_times_a_sigmoid():
  """With v_p = 0 the predicted position is S_true * sigmoid(0) = S_true / 2 for every step (eq. 9)."""
  window = SOURCE.shape[1]
  local = make('bigru', 'luong', 'general', input_feeding=False, locality='local_p', local_window=window)
  variables = local.init(jax.random.key(4), SOURCE, TARGET_IN)
  params = jax.tree.map(lambda x: x, variables['params'])
  params['cell']['v_p']['kernel'] = jnp.zeros_like(params['cell']['v_p']['kernel'])
  _, w_local = local.apply({'params': params}, SOURCE, TARGET_IN)
  global_params = {k: v for k, v in params.items()}
  global_params['cell'] = {k: v for k, v in params['cell'].items() if k not in ('W_p', 'v_p')}
  _, w_global = make('bigru', 'luong', 'general', input_feeding=False).apply({'params': global_params}, SOURCE,
                                                                            TARGET_IN)
  center = (S_TRUE / 2.0)[:, None, None]
  np.testing.assert_allclose(w_local, np.asarray(w_global) * gaussian(center, window), rtol=1e-5, atol=1e-7)


def test_monotonic_attention_soft_in_training_hard_when_decoding():
  model = make('bigru', 'bahdanau', 'additive', weighting='monotonic', monotonic_bias_init=0.0)
  variables = model.init(jax.random.key(5), SOURCE, TARGET_IN)
  # Training adds pre-sigmoid noise (a fresh draw per dropout key); evaluation does not.
  train = lambda key: model.apply(variables, SOURCE, TARGET_IN, train=True, rngs={'dropout': key})[1]
  assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))
  np.testing.assert_array_equal(model.apply(variables, SOURCE, TARGET_IN)[1], model.apply(variables, SOURCE,
                                                                                           TARGET_IN)[1])
  # Decoding: one-hot or zero rows, never moving backwards, zero for good once past the end.
  tokens, weights = decoding.decode(model, variables['params'], SOURCE, max_length=6, beam_size=1)
  _, stepped = stepwise(model, variables, SOURCE, jnp.asarray(np.concatenate(
      [np.full((2, 1), 1), np.where(tokens[:, :-1] == PAD_ID, 2, tokens[:, :-1])], 1), jnp.int32))
  emitted = tokens != PAD_ID
  np.testing.assert_array_equal(weights, np.where(emitted[..., None], stepped, 0.0))
  for b in range(2):
    rows = np.asarray(stepped[b])
    assert set(np.unique(rows)) <= {0.0, 1.0} and np.all(rows.sum(-1) <= 1)
    positions = [int(np.argmax(r)) if r.any() else None for r in rows]
    seen_end = False
    for previous, current in zip(positions, positions[1:]):
      seen_end = seen_end or current is None
      if seen_end:
        assert current is None
      elif previous is not None:
        assert current >= previous


@pytest.mark.parametrize('bias, want', [(30.0, 'first'), pytest.param(-30.0, 'none', marks=slow)])
def test_monotonic_attention_at_its_limits(bias, want):
  """p = 1 everywhere: attention stays on the first source token; p = 0: it passes the end at once."""
  model = make('bigru', 'luong', 'general', weighting='monotonic', monotonic_bias_init=bias)
  variables = model.init(jax.random.key(6), SOURCE, TARGET_IN)
  _, soft = model.apply(variables, SOURCE, TARGET_IN)
  _, hard = stepwise(model, variables, SOURCE, TARGET_IN)
  expected = np.zeros(soft.shape)
  if want == 'first':
    expected[..., 0] = 1.0
  np.testing.assert_allclose(soft, expected, atol=1e-6)
  np.testing.assert_array_equal(hard, expected)
  # Saturated selection probabilities still give finite gradients (training noise included).
  loss = lambda params: jnp.sum(model.apply({'params': params}, SOURCE, TARGET_IN, train=True,
                                            rngs={'dropout': jax.random.key(0)})[0])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(jax.grad(loss)(variables['params'])))


@pytest.mark.parametrize('options, message', [
    (dict(locality='local_q'), 'Unknown locality .*global, local_m, local_p'),
    (dict(locality='local_p', weighting='sparsemax'), "takes weighting='softmax'"),
    (dict(locality='local_m', local_window=0), 'local_window must be an integer D >= 1'),
    (dict(weighting='monotonic', decoder='none'), "needs an attention decoder"),
    (dict(weighting='hardmax'), 'Valid weightings: entmax15, softmax, sparsemax, monotonic'),
    (dict(weighting='monotonic', monotonic_noise=-1.0), 'monotonic_noise is a standard deviation'),
])
def test_bad_mechanism_configs_say_what_is_allowed(options, message):
  options = {'decoder': 'luong', **options}
  with pytest.raises(ValueError, match=message):
    make('bigru', options.pop('decoder'), 'general', **options)


# --- the attention losses train what they are for (a fixed toy batch, plain optax steps) -----------------------
def _copy_batch():
  """Copy a 5-token source; the gold links join target token t to source token t."""
  rng = np.random.default_rng(0)
  source = rng.integers(4, 11, size=(16, 6)).astype(np.int32)
  source[:, 5] = 2
  target_out = source.copy()
  target_in = np.concatenate([np.ones((16, 1), np.int32), source[:, :5]], 1)
  alignment = np.zeros((16, 6, 6), np.float32)
  alignment[:, np.arange(5), np.arange(5)] = 1.0
  return {'source': jnp.asarray(source), 'target_in': jnp.asarray(target_in), 'target_out': jnp.asarray(target_out),
          'alignment': jnp.asarray(alignment)}


def _train(model, steps=30, **loss_weights):
  batch = _copy_batch()
  params = model.init(jax.random.key(0), batch['source'], batch['target_in'])['params']
  loss_fn = functools.partial(translation.sequence_loss, model=model, **loss_weights)
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, rng):
    grads = jax.grad(lambda p: loss_fn(p, batch, rng, train=True)[0])(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  measure = lambda params: {k: float(v) for k, v in translation.sequence_loss(
      params, batch, jax.random.key(0), train=False, model=model, coverage_loss_weight=1.0,
      guided_alignment_weight=1.0)[2].items()}
  before = measure(params)
  for i in range(steps):
    params, opt_state = step(params, opt_state, jax.random.key(i))
  return {**measure(params), 'loss_sum_before': before['loss_sum']}


@pytest.mark.parametrize('decoder,scorer,options,loss_weights', [
    pytest.param('luong', 'general', dict(locality='local_m', local_window=2), {}, marks=slow),
    pytest.param('luong', 'general', dict(locality='local_p', local_window=2), {}, marks=slow),
    pytest.param('bahdanau', 'additive', dict(weighting='monotonic', monotonic_bias_init=0.0), {}, marks=slow),
    ('bahdanau', 'coverage', {}, dict(coverage_loss_weight=1.0)),
])
def test_each_mechanism_trains_a_tiny_model(decoder, scorer, options, loss_weights):
  """A few optimiser steps on a copy batch (whose alignment is monotonic, so every mechanism can follow it)."""
  trained = _train(make('bigru', decoder, scorer, **options), steps=20, **loss_weights)
  assert trained['loss_sum'] < 0.8 * trained['loss_sum_before'], trained


@pytest.mark.slow
def test_guided_alignment_pulls_attention_onto_the_gold_links():
  model = make('bigru', 'bahdanau', 'additive')
  free = _train(model)
  guided = _train(model, guided_alignment_weight=1.0)
  free_ce = free['alignment_loss_sum'] / free['aligned_count']
  guided_ce = guided['alignment_loss_sum'] / guided['aligned_count']
  assert guided_ce < 0.5 * free_ce, (guided_ce, free_ce)


def test_the_training_objective_adds_lambda_times_each_attention_loss():
  model = make('bigru', 'bahdanau', 'coverage')
  batch = _copy_batch()
  params = model.init(jax.random.key(0), batch['source'], batch['target_in'])['params']
  loss = lambda **weights: translation.sequence_loss(params, batch, jax.random.key(0), train=False, model=model,
                                                     **weights)
  plain, tokens, metrics = loss()
  assert 'coverage_loss_sum' not in metrics and float(plain) == float(metrics['loss_sum'])
  both, tokens_both, metrics = loss(coverage_loss_weight=0.5, guided_alignment_weight=2.0)
  assert float(tokens_both) == float(tokens)
  want = float(metrics['loss_sum']) + 0.5 * float(metrics['coverage_loss_sum']) + 2.0 * float(
      metrics['alignment_loss_sum'])
  np.testing.assert_allclose(float(both), want, rtol=1e-6)
  assert float(metrics['coverage_loss_sum']) > 0 and float(metrics['aligned_count']) == 16 * 5


def test_minimising_the_coverage_loss_spreads_attention_over_the_source():
  """Gradient descent on free scores [T, S] from attention that keeps returning to the same tokens: the coverage
  loss goes to ~0 and no source token ends up attended much more than once in total (See et al.'s purpose)."""
  from attention_jax.training import attention_losses
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.standard_normal((1, 5, 5)) + 2.0 * np.eye(5)[[0, 0, 1, 1, 2]][None], jnp.float32)
  mask = jnp.ones((1, 5), bool)
  loss = lambda z: attention_losses.coverage_loss_sum(jax.nn.softmax(z, -1), mask)
  before = float(loss(scores))
  step = jax.jit(lambda z: z - 3.0 * jax.grad(loss)(z))
  for _ in range(300):
    scores = step(scores)
  weights = np.asarray(jax.nn.softmax(scores, -1))
  assert before > 1.0 and float(loss(scores)) < 0.05 * before
  assert weights.sum(1).max() < 1.2
