"""Flax modules: same numbers as the pure functions, prepared-keys path, multi-head parity, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import attention
from attention_jax import modules
from attention_jax import scoring


def _inputs(seed=0, b=2, t=3, s=5, d_q=6, d_k=4, d_v=3):
  rng = np.random.default_rng(seed)
  f = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
  mask = jnp.asarray(rng.random((b, s)) > 0.3).at[:, 0].set(True)
  return f(b, t, d_q), f(b, s, d_k), f(b, s, d_v), mask


@pytest.mark.parametrize('scorer,options', [('additive', {'hidden_dim': 8}), ('general', {}),
                                            ('concat', {'hidden_dim': 8}), ('location', {'max_source_length': 9})])
def test_attention_module_equals_pure_function(scorer, options):
  query, keys, values, mask = _inputs()
  module = modules.Attention(scorer=scorer, scorer_options=options)
  variables = module.init(jax.random.key(0), query, keys, values, mask)
  params = variables['params']['scorer']
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, scoring.init(scorer, jax.random.key(0), 6, 4, **options))
  ctx, w = module.apply(variables, query, keys, values, mask)
  ctx_ref, w_ref = attention.batched_attend(scorer, params, query, keys, values, mask)
  np.testing.assert_array_equal(ctx, ctx_ref)
  np.testing.assert_array_equal(w, w_ref)
  # The per-step decoder path gives the same numbers, one query position at a time.
  prepared = module.apply(variables, keys, query_dim=6, method=modules.Attention.prepare_keys)
  for t in range(query.shape[1]):
    ctx_t, w_t = module.apply(variables, query[:, t], prepared, values, mask, method=modules.Attention.attend_prepared)
    np.testing.assert_allclose(ctx_t, ctx[:, t], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w_t, w[:, t], rtol=1e-6, atol=1e-7)


def test_attention_module_with_state_and_sparsemax():
  query, keys, values, mask = _inputs(d_q=4)
  module = modules.Attention(scorer='location_aware', weighting='sparsemax', scorer_options={'hidden_dim': 8})
  prev = jnp.full((2, 5), 0.2)
  variables = module.init(jax.random.key(1), query[:, 0], keys, values, mask, prev_weights=prev)
  ctx, w = module.apply(variables, query[:, 0], keys, values, mask, prev_weights=prev)
  ref = attention.batched_attend('location_aware', variables['params']['scorer'], query[:, 0], keys, values, mask,
                                 weighting='sparsemax', prev_weights=prev)
  np.testing.assert_array_equal(w, ref[1])
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)


def test_multi_head_scaled_dot_matches_jax_nn_dot_product_attention():
  rng = np.random.default_rng(2)
  x_q = jnp.asarray(rng.standard_normal((2, 4, 12)), jnp.float32)
  x_kv = jnp.asarray(rng.standard_normal((2, 6, 10)), jnp.float32)
  mask = jnp.asarray(rng.random((2, 6)) > 0.3).at[:, 0].set(True)
  module = modules.MultiHeadAttention(num_heads=3, qkv_features=12, out_features=7)
  variables = module.init(jax.random.key(0), x_q, x_kv, mask)
  out, weights = module.apply(variables, x_q, x_kv, mask)
  p = variables['params']
  proj = lambda x, name: jnp.einsum('bld,dnh->blnh', x, p[name]['kernel']) + p[name]['bias']
  ctx = jax.nn.dot_product_attention(proj(x_q, 'query'), proj(x_kv, 'key'), proj(x_kv, 'value'),
                                     mask=mask[:, None, None, :])
  want = jnp.einsum('btnh,nho->bto', ctx, p['out']['kernel']) + p['out']['bias']
  assert out.shape == (2, 4, 7) and weights.shape == (2, 3, 4, 6)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_multi_head_additive_runs_each_head_with_its_own_parameters():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((2, 5, 8)), jnp.float32)
  module = modules.MultiHeadAttention(num_heads=2, scorer='additive', scorer_options={'hidden_dim': 3})
  variables = module.init(jax.random.key(0), x, x)
  head_params = variables['params']['scorer']
  assert jax.tree.map(jnp.shape, head_params) == {'W_q': (2, 4, 3), 'W_k': (2, 4, 3), 'v': (2, 3)}
  assert not np.allclose(head_params['W_q'][0], head_params['W_q'][1])
  _, weights = module.apply(variables, x, x)
  p = variables['params']
  q = jnp.einsum('bld,dnh->blnh', x, p['query']['kernel']) + p['query']['bias']
  k = jnp.einsum('bld,dnh->blnh', x, p['key']['kernel']) + p['key']['bias']
  for n in range(2):
    _, w_n = attention.batched_attend('additive', jax.tree.map(lambda a: a[n], head_params), q[:, :, n], k[:, :, n],
                                      k[:, :, n])
    np.testing.assert_allclose(weights[:, n], w_n, rtol=1e-5, atol=1e-7)


def test_module_errors():
  with pytest.raises(ValueError, match='Unknown scorer .*Valid scorers'):
    modules.Attention(scorer='mlp')
  with pytest.raises(ValueError, match='location_aware.*cannot be used per head'):
    modules.MultiHeadAttention(num_heads=2, scorer='location_aware')
  x = jnp.ones((1, 2, 6))
  with pytest.raises(ValueError, match='qkv_features=6 is not divisible by num_heads=4'):
    modules.MultiHeadAttention(num_heads=4).init(jax.random.key(0), x, x)
