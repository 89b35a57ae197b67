"""Attention pooling classifier and image-to-sequence model: formulas, masking, decoding, penalty."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import decoding
from attention_jax import scoring
from attention_jax.models.classifier import AttentionPoolingClassifier
from attention_jax.models.image_to_sequence import ImageToSequence, doubly_stochastic_penalty, grid_shape

TOKENS = jnp.array([[5, 6, 7, 8, 0, 0], [4, 9, 0, 0, 0, 0]], jnp.int32)


def test_dot_pooling_is_yang_et_al_formula():
  model = AttentionPoolingClassifier(vocab_size=10, num_classes=3, scorer='dot', embed_dim=4, hidden_dim=3,
                                     attention_dim=5)
  variables = model.init(jax.random.key(0), TOKENS)
  logits, weights = model.apply(variables, TOKENS)
  _, state = model.apply(variables, TOKENS, capture_intermediates=True, mutable=['intermediates'])
  states = np.asarray(state['intermediates']['encoder']['__call__'][0][0])        # [B, S, 2H]
  p = variables['params']
  u = np.tanh(states @ np.asarray(p['key_layer']['kernel']) + np.asarray(p['key_layer']['bias']))
  e = u @ np.asarray(p['context_query'])
  a = np.where(TOKENS != 0, np.exp(e), 0.0)
  a /= a.sum(-1, keepdims=True)
  np.testing.assert_allclose(weights, a, rtol=1e-5, atol=1e-7)
  pooled = np.einsum('bs,bsd->bd', a, states)
  want = pooled @ np.asarray(p['classifier']['kernel']) + np.asarray(p['classifier']['bias'])
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scorer', scoring.names())
def test_pooling_runs_with_every_scorer_and_ignores_padding(scorer):
  model = AttentionPoolingClassifier(vocab_size=10, num_classes=2, scorer=scorer, embed_dim=4, hidden_dim=3,
                                     attention_dim=6, scorer_options={'hidden_dim': 4} if 'hidden_dim' in
                                     scoring.get(scorer).options else {})
  variables = model.init(jax.random.key(1), TOKENS)
  logits, weights = model.apply(variables, TOKENS)
  assert logits.shape == (2, 2)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(weights)[np.asarray(TOKENS) == 0], 0.0)
  if scorer != 'location':   # location's parameters are sized for the initial length
    logits_padded, _ = model.apply(variables, jnp.pad(TOKENS, ((0, 0), (0, 2))))
    np.testing.assert_allclose(logits_padded, logits, rtol=1e-5, atol=1e-6)


def test_image_to_sequence_steps_like_teacher_forcing_and_decodes():
  images = jax.random.uniform(jax.random.key(0), (2, 8, 24, 1))
  target_in = jnp.array([[1, 5, 6], [1, 7, 3]], jnp.int32)
  model = ImageToSequence(vocab_size=9, conv_features=(4, 6), conv_pool=(True, True), embed_dim=4, hidden_dim=8)
  variables = model.init(jax.random.key(1), images, target_in)
  logits, weights = model.apply(variables, images, target_in)
  h, w = grid_shape(model, 8, 24)
  assert (h, w) == (2, 6) and weights.shape == (2, 3, h * w) and logits.shape == (2, 3, 9)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  memory = model.apply(variables, images, method='encode')
  carry = model.apply(variables, memory, method='initial_state')
  for t in range(3):
    carry, logits_t, weights_t = model.apply(variables, carry, target_in[:, t], memory, method='decode_step')
    np.testing.assert_allclose(logits_t, logits[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights_t, weights[:, t], rtol=1e-5, atol=1e-6)
  tokens, decoded_weights = decoding.greedy_decode(model, variables['params'], images, max_length=4)
  assert tokens.shape == (2, 4) and decoded_weights.shape == (2, 4, h * w)


def test_doubly_stochastic_penalty_by_hand():
  weights = jnp.array([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])   # [1, T=3, P=3]
  mask = jnp.array([[True, True, False]])
  # Totals over the first two steps: [0.5, 1.5, 0.0] -> (0.5)^2 + (-0.5)^2 + 1^2 = 1.5
  np.testing.assert_allclose(doubly_stochastic_penalty(weights, mask), [1.5])
