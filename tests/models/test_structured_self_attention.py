"""Structured self-attention (Lin et al. 2017): hop weights, pooled matrix, penalty and the training loss."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax.data import sentiment as sentiment_data
from attention_jax.models.classifier import AttentionPoolingClassifier
from attention_jax.tasks import sentiment
from attention_jax.training.attention_losses import hop_redundancy_penalty
from tests.helpers.fake_data import write_fake_ratings

TOKENS = jnp.array([[5, 6, 7, 8, 0, 0], [4, 9, 0, 0, 0, 0]], jnp.int32)


def numpy_penalty(weights):
  """||A A^T - I||_F^2 per example, written out with loops over hops."""
  weights = np.asarray(weights, np.float64)
  out = []
  for a in weights:
    r = a.shape[0]
    total = 0.0
    for j in range(r):
      for k in range(r):
        total += (float(a[j] @ a[k]) - (1.0 if j == k else 0.0)) ** 2
    out.append(total)
  return np.array(out)


def structured_model(num_hops, **kwargs):
  return AttentionPoolingClassifier(vocab_size=10, num_classes=3, scorer='dot', pooling='structured',
                                    num_hops=num_hops, embed_dim=4, hidden_dim=3, attention_dim=5, **kwargs)


def test_penalty_matches_numpy_and_its_extremes():
  weights = jax.nn.softmax(jax.random.normal(jax.random.key(0), (3, 4, 7)) * 2.0, axis=-1)
  np.testing.assert_allclose(hop_redundancy_penalty(weights), numpy_penalty(weights), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(hop_redundancy_penalty)(weights), numpy_penalty(weights), rtol=1e-5)
  per_example = jax.vmap(lambda a: hop_redundancy_penalty(a[None])[0])(weights)
  np.testing.assert_allclose(per_example, hop_redundancy_penalty(weights), rtol=1e-6)
  # Hops that each pick a different word: A A^T = I, no penalty. All hops on one word: r^2 - r.
  distinct = jnp.eye(4, 7)[None]
  same = jnp.zeros((1, 4, 7)).at[:, :, 2].set(1.0)
  np.testing.assert_allclose(hop_redundancy_penalty(distinct), [0.0], atol=1e-7)
  np.testing.assert_allclose(hop_redundancy_penalty(same), [12.0], rtol=1e-6)
  # One hop spread evenly over 4 words: (1/4 - 1)^2.
  np.testing.assert_allclose(hop_redundancy_penalty(jnp.full((1, 1, 4), 0.25)), [0.5625], rtol=1e-6)


def test_penalty_gradient():
  weights = jax.nn.softmax(jax.random.normal(jax.random.key(1), (2, 3, 5)), axis=-1)
  check_grads(lambda a: jnp.sum(hop_redundancy_penalty(a)), (weights,), order=2, modes=('rev',), atol=1e-2, rtol=1e-2)
  # d/dA ||A A^T - I||^2 = 4 (A A^T - I) A
  a = np.asarray(weights, np.float64)
  want = 4 * np.einsum('brq,bqs->brs', np.einsum('brs,bqs->brq', a, a) - np.eye(3), a)
  np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(hop_redundancy_penalty(x)))(weights), want, rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize('num_hops', [1, 4])
def test_structured_pooling_is_lin_et_al_formula(num_hops):
  model = structured_model(num_hops)
  variables = model.init(jax.random.key(0), TOKENS)
  logits, weights = model.apply(variables, TOKENS)
  assert weights.shape == (2, num_hops, 6) and logits.shape == (2, 3)
  _, state = model.apply(variables, TOKENS, capture_intermediates=True, mutable=['intermediates'])
  states = np.asarray(state['intermediates']['encoder']['__call__'][0][0])        # H [B, S, 2H]
  p = variables['params']
  assert 'bias' not in p['key_layer']                                             # W_s1 has no bias
  w_s1, w_s2 = np.asarray(p['key_layer']['kernel']), np.asarray(p['context_query'])   # [2H, d_a], [r, d_a]
  scores = np.einsum('ra,bsa->brs', w_s2, np.tanh(states @ w_s1))                  # W_s2 tanh(W_s1 H^T)
  a = np.where(np.asarray(TOKENS)[:, None] != 0, np.exp(scores), 0.0)
  a /= a.sum(-1, keepdims=True)
  np.testing.assert_allclose(weights, a, rtol=1e-5, atol=1e-7)
  m = np.einsum('brs,bsd->brd', a, states)                                         # M = A H
  want = m.reshape(2, -1) @ np.asarray(p['classifier']['kernel']) + np.asarray(p['classifier']['bias'])
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
  jitted_logits, jitted_weights = jax.jit(model.apply)(variables, TOKENS)
  np.testing.assert_allclose(jitted_logits, logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jitted_weights, weights, rtol=1e-5, atol=1e-7)
  # Padding never changes the result.
  padded_logits, _ = model.apply(variables, jnp.pad(TOKENS, ((0, 0), (0, 3))))
  np.testing.assert_allclose(padded_logits, logits, rtol=1e-5, atol=1e-6)


def test_stateful_scorer_runs_per_hop():
  model = AttentionPoolingClassifier(vocab_size=10, num_classes=2, scorer='location_aware', pooling='structured',
                                     num_hops=3, embed_dim=4, hidden_dim=3, attention_dim=5,
                                     scorer_options={'hidden_dim': 4})
  variables = model.init(jax.random.key(2), TOKENS)
  _, weights = model.apply(variables, TOKENS)
  assert weights.shape == (2, 3, 6)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(weights)[np.broadcast_to(np.asarray(TOKENS)[:, None] == 0, (2, 3, 6))], 0)


def test_loss_adds_the_weighted_penalty():
  model = structured_model(4)
  params = model.init(jax.random.key(0), TOKENS)['params']
  batch = {'tokens': TOKENS, 'label': jnp.array([0, 2])}
  plain, count, metrics = sentiment.classification_loss(params, batch, jax.random.key(1), train=False, model=model)
  penalised, _, metrics_penalised = sentiment.classification_loss(params, batch, jax.random.key(1), train=False,
                                                                  model=model, hop_penalty_weight=0.3)
  _, weights = model.apply({'params': params}, TOKENS)
  penalty = numpy_penalty(weights).sum()
  np.testing.assert_allclose(metrics['hop_penalty_sum'], penalty, rtol=1e-5)
  np.testing.assert_allclose(penalised, plain + 0.3 * penalty, rtol=1e-5)
  np.testing.assert_allclose(metrics_penalised['loss_sum'], plain, rtol=1e-6)    # reported CE excludes it
  assert float(count) == 2
  # The penalty's gradient reaches the pooling queries.
  grads = jax.grad(lambda p: sentiment.classification_loss(p, batch, jax.random.key(1), train=False, model=model,
                                                           hop_penalty_weight=1.0)[0]
                   - sentiment.classification_loss(p, batch, jax.random.key(1), train=False, model=model)[0])(params)
  assert float(jnp.abs(grads['context_query']).max()) > 0


def test_minimising_the_penalty_separates_the_hops():
  model = structured_model(3)
  params = model.init(jax.random.key(3), TOKENS)['params']

  def penalty(p):
    _, weights = model.apply({'params': p}, TOKENS)
    return jnp.mean(hop_redundancy_penalty(weights))

  step = jax.jit(lambda p: jax.tree.map(lambda x, g: x - 0.5 * g, p, jax.grad(penalty)(p)))
  before = float(penalty(params))
  for _ in range(150):
    params = step(params)
  # The second example has 2 words for 3 hops, so its best is one hop doubled up or spread: > 0.
  assert float(penalty(params)) < 0.6 * before


@pytest.mark.parametrize('overrides, message', [
    ({'model.pooling': 'multi'}, 'Valid poolings: context_query, structured'),
    ({'model.num_hops': 4}, "needs config.model.pooling='structured'"),
    ({'model.pooling': 'structured', 'model.num_hops': 0}, 'num_hops'),
    ({'train.hop_penalty_weight': 1.0}, "with 'context_query' pooling set it to 0"),
    ({'model.pooling': 'structured', 'train.hop_penalty_weight': -1.0}, 'must be a number >= 0'),
])
def test_bad_pooling_configs_are_refused(overrides, message):
  config = sentiment.default_config()
  for key, value in overrides.items():
    group, field = key.split('.')
    config[group][field] = value
  with pytest.raises(ValueError, match=message):
    sentiment.validate_config(config)


def test_structured_config_is_valid():
  config = sentiment.default_config()
  config.model.update(pooling='structured', num_hops=8)
  config.train.hop_penalty_weight = 1.0
  sentiment.validate_config(config)


def test_structured_sentiment_run_reports_the_penalty_and_shows_every_hop(tmp_path):
  ratings = str(tmp_path / 'ratings')
  write_fake_ratings(ratings)
  sentiment_data.build(str(tmp_path / 'data'), ratings)
  config = sentiment.default_config()
  config.data.data_dir = str(tmp_path / 'data')
  config.data.min_count = 1
  config.model.update(embed_dim=8, hidden_dim=8, attention_dim=8, dropout_rate=0.0, pooling='structured', num_hops=2)
  config.train.update(batch_size=16, num_steps=60, log_every=20, eval_every=60, checkpoint_every=60,
                      learning_rate=1e-2, hop_penalty_weight=1.0)
  config.eval.num_examples_shown = 3
  workdir = str(tmp_path / 'run')
  results = sentiment.train_and_evaluate(config, workdir)
  assert results['test']['accuracy'] >= 0.8          # the fake sentences are separable by their words
  assert 0.0 <= results['test']['hop_penalty'] < 2.0   # r = 2: at most r^2 - r = 2 when both hops coincide
  saved = json.load(open(os.path.join(workdir, 'results.json')))
  assert (saved['pooling'], saved['num_hops']) == ('structured', 2)
  html = open(os.path.join(workdir, 'attention.html')).read()
  assert html.count('hop 1/2') == 3 and html.count('hop 2/2') == 3
  logged = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert any('hop_penalty' in row for row in logged)
