"""The pointer-generator (See et al. 2017): the mixture against numpy (OOV ids, masks, repeated ids), its gradient,
the model's teacher forcing against its own step-by-step decoding, p_gen, decoding and the configuration errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import copy_attention
from attention_jax import decoding
from attention_jax.models import Seq2Seq, build_model
from attention_jax.tasks import translation_eval


def numpy_mixture(logits, weights, ids, mask, p_gen, extended):
  """P(w) = p_gen softmax(logits)(w) + (1 - p_gen) sum_{i: x_i = w, mask_i} a_i, written out with loops."""
  logits, weights = np.asarray(logits, np.float64), np.asarray(weights, np.float64)
  out = np.zeros(logits.shape[:-1] + (extended,))
  for index in np.ndindex(*logits.shape[:-1]):
    b = index[0]
    z = np.exp(logits[index] - logits[index].max())
    out[index][:logits.shape[-1]] = p_gen[index] * z / z.sum()
    for i in range(ids.shape[1]):
      if mask[b, i]:
        out[index][ids[b, i]] += (1 - p_gen[index]) * weights[index][i]
  return out


def random_case(rng, batch=2, steps=3, source=5, vocab=7, extended=9):
  logits = rng.normal(size=(batch, steps, vocab)).astype(np.float32)
  mask = np.array([[True] * source, [True] * (source - 2) + [False] * 2])
  raw = rng.random((batch, steps, source)) * mask[:, None]
  weights = (raw / raw.sum(-1, keepdims=True)).astype(np.float32)
  # Repeated ids (3 twice), ids of the document's own OOV words (>= vocab) and, at padding, id 0.
  ids = np.array([[3, 8, 3, 1, 7], [2, 3, 7, 0, 0]], np.int32)
  p_gen = rng.random((batch, steps)).astype(np.float32)
  return logits, weights, ids, mask, p_gen, extended


def test_mixture_matches_numpy_with_oov_ids_repeats_and_padding():
  logits, weights, ids, mask, p_gen, extended = random_case(np.random.default_rng(0))
  probs = copy_attention.pointer_generator_probs(logits, weights, ids, mask, p_gen, extended_vocab_size=extended)
  expected = numpy_mixture(logits, weights, ids, mask, p_gen, extended)
  np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  # An OOV id gets only copy mass; a repeated id the sum of its positions' weights.
  np.testing.assert_allclose(probs[0, :, 8], (1 - p_gen[0]) * weights[0, :, 1], rtol=1e-5)
  np.testing.assert_allclose(probs[0, :, 3], p_gen[0] * jax.nn.softmax(logits[0])[:, 3]
                             + (1 - p_gen[0]) * (weights[0, :, 0] + weights[0, :, 2]), rtol=1e-5)
  log_p = copy_attention.pointer_generator_log_probs(logits, weights, ids, mask, p_gen, extended_vocab_size=extended)
  np.testing.assert_allclose(jax.nn.log_softmax(log_p), log_p, atol=1e-5)    # already normalised


def test_padding_positions_give_no_mass_even_with_weight():
  logits, weights, ids, mask, p_gen, extended = random_case(np.random.default_rng(1))
  weights = weights.copy()
  weights[1, :, 3:] = 0.5           # weight where the mask is False must be ignored
  ids = ids.copy()
  ids[1, 3:] = 5
  probs = copy_attention.pointer_generator_probs(logits, weights, ids, mask, p_gen, extended_vocab_size=extended)
  np.testing.assert_allclose(probs, numpy_mixture(logits, weights, ids, mask, p_gen, extended), rtol=1e-5, atol=1e-6)


def test_single_step_shapes_and_p_gen_extremes():
  logits, weights, ids, mask, _, extended = random_case(np.random.default_rng(2))
  logits, weights = logits[:, 0], weights[:, 0]                     # [B, V], [B, S]
  generate = copy_attention.pointer_generator_probs(logits, weights, ids, mask, jnp.ones(2), extended_vocab_size=extended)
  np.testing.assert_allclose(generate[:, :logits.shape[-1]], jax.nn.softmax(logits), rtol=1e-6)
  assert float(jnp.abs(generate[:, logits.shape[-1]:]).max()) == 0.0
  copy = copy_attention.pointer_generator_probs(logits, weights, ids, mask, jnp.zeros(2))
  np.testing.assert_allclose(copy[0, 3], weights[0, 0] + weights[0, 2], rtol=1e-6)


def test_mixture_gradients_match_finite_differences():
  logits, weights, ids, mask, p_gen, extended = random_case(np.random.default_rng(3))
  f = lambda z, a, g: copy_attention.pointer_generator_log_probs(z, a, ids, mask, g, extended_vocab_size=extended)
  check_grads(f, (logits, weights, p_gen), order=1, modes=('rev',), atol=2e-2, rtol=2e-2)


def test_extended_vocabulary_smaller_than_vocabulary_is_refused():
  logits, weights, ids, mask, p_gen, _ = random_case(np.random.default_rng(4))
  with pytest.raises(ValueError, match='extended_vocab_size=5 must be >= the vocabulary size 7'):
    copy_attention.pointer_generator_probs(logits, weights, ids, mask, p_gen, extended_vocab_size=5)


V = 13
SOURCE = jnp.array([[5, 6, 7, 8, 2, 0], [4, 9, 2, 0, 0, 0]], jnp.int32)
TARGET_IN = jnp.array([[1, 5, 6, 7], [1, 4, 9, 0]], jnp.int32)


def make(**overrides):
  config = dict(encoder='bigru', decoder='bahdanau', scorer='additive', embed_dim=8, hidden_dim=8,
                copy_attention=True)
  config.update(overrides)
  return build_model(config, source_vocab_size=V, target_vocab_size=V, max_source_length=6)


def test_model_outputs_the_mixture_and_steps_like_teacher_forcing():
  model = make()
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  assert variables['params']['cell']['copy_gate']['kernel'].shape == (2 * 8 + 8 + 8, 1)   # [c_t; s_t; y_{t-1}]
  (log_p, weights), state = model.apply(variables, SOURCE, TARGET_IN, mutable=['intermediates'])
  p_gen = state['intermediates']['cell']['p_gen'][0]
  assert log_p.shape == (2, 4, V) and p_gen.shape == (2, 4)
  np.testing.assert_allclose(jnp.exp(log_p).sum(-1), 1.0, rtol=1e-5)
  # Rebuild the mixture from the parts: the vocabulary logits of the same model without the copy gate.
  plain = make(copy_attention=False)
  params = dict(variables['params'])
  params['cell'] = {k: v for k, v in params['cell'].items() if k != 'copy_gate'}
  vocab_logits, plain_weights = plain.apply({'params': params}, SOURCE, TARGET_IN)
  np.testing.assert_allclose(weights, plain_weights, rtol=1e-6)
  expected = numpy_mixture(vocab_logits, weights, np.asarray(SOURCE), np.asarray(SOURCE) != 0, np.asarray(p_gen), V)
  np.testing.assert_allclose(jnp.exp(log_p), expected, rtol=1e-4, atol=1e-6)
  # Step by step (decode_step) equals teacher forcing.
  memory = model.apply(variables, SOURCE, method=Seq2Seq.encode)
  carry = model.apply(variables, memory, method=Seq2Seq.initial_state)
  for t in range(TARGET_IN.shape[1]):
    carry, step_log_p, _ = model.apply(variables, carry, TARGET_IN[:, t], memory, method=Seq2Seq.decode_step)
    np.testing.assert_allclose(step_log_p, log_p[:, t], rtol=1e-4, atol=1e-5)


def test_copy_model_learns_to_copy_unseen_ids_and_decodes():
  """Trained only to copy, the gate learns to copy: greedy and beam decoding reproduce the source, p_gen is low."""
  import optax
  model = make(hidden_dim=16, embed_dim=8)
  rng = np.random.default_rng(0)
  source = np.concatenate([rng.integers(3, V, size=(32, 4)), np.full((32, 1), 2)], 1).astype(np.int32)
  target_in = np.concatenate([np.ones((32, 1), np.int32), source[:, :-1]], 1)
  params = model.init(jax.random.key(0), source, target_in)['params']
  optimizer = optax.adam(2e-2)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss(p):
      log_p, _ = model.apply({'params': p}, source, target_in)
      return -jnp.mean(jnp.take_along_axis(log_p, source[..., None], -1))
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value

  for _ in range(150):
    params, opt_state, value = step(params, opt_state)
  assert float(value) < 0.1
  tokens, _ = decoding.greedy_decode(model, params, jnp.asarray(source), max_length=5)
  np.testing.assert_array_equal(tokens, source)
  beam, _ = decoding.beam_search(model, params, jnp.asarray(source[:4]), max_length=5, beam_size=3)
  np.testing.assert_array_equal(beam, source[:4])
  gates = translation_eval.copy_gates(model, params, source, np.asarray(tokens))
  assert gates.shape == (32, 5) and float(gates.mean()) < 0.5
  rate = translation_eval.copy_rate([g for g in gates])
  np.testing.assert_allclose(rate['copy_rate'], 1.0 - gates.mean(), rtol=1e-6)


def test_copy_configuration_errors():
  with pytest.raises(ValueError, match="built on the Bahdanau decoder; got decoder='luong'"):
    make(decoder='luong')
  with pytest.raises(ValueError, match='need one vocabulary; got sizes 13 and 9'):
    build_model(dict(decoder='bahdanau', copy_attention=True), source_vocab_size=13, target_vocab_size=9,
                max_source_length=6)
