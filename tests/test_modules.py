"""Flax modules: same numbers as the pure functions, prepared-keys path, multi-head parity, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

from attention_jax import attention
from attention_jax import memory_efficient
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
  # The per-step decoder path gives the same numbers, one query position at a time (up to float32 round-off:
  # it may associate the products differently, e.g. q^T (W k) instead of (q^T W) k).
  prepared = module.apply(variables, keys, query_dim=6, method=modules.Attention.prepare_keys)
  for t in range(query.shape[1]):
    ctx_t, w_t = module.apply(variables, query[:, t], prepared, values, mask, method=modules.Attention.attend_prepared)
    np.testing.assert_allclose(ctx_t, ctx[:, t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_t, w[:, t], rtol=1e-5, atol=1e-6)


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


def numpy_scaled_dot_context(q, k, v, mask):
  """Reference context [B, T, N, h]: softmax(q k^T / sqrt(h)) v per head, masked keys excluded, empty rows 0."""
  q, k, v, mask = (np.asarray(a, np.float64) for a in (q, k, v, mask))
  scores = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(q.shape[-1])
  mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None, :, :]
  scores = np.where(mask > 0, scores, -np.inf)
  top = np.max(scores, axis=-1, keepdims=True)
  exp = np.where(mask > 0, np.exp(scores - np.where(np.isfinite(top), top, 0.0)), 0.0)
  weights = exp / np.maximum(exp.sum(-1, keepdims=True), 1e-300)
  return np.einsum('bnts,bsnh->btnh', weights, v)


@pytest.mark.parametrize('mask_kind', ['padding', 'per_query'])
def test_fused_xla_attention_equals_the_vmap_path_and_numpy(mask_kind):
  rng = np.random.default_rng(4)
  q = jnp.asarray(rng.standard_normal((2, 3, 2, 4)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((2, 5, 2, 4)), jnp.float32)
  v = jnp.asarray(rng.standard_normal((2, 5, 2, 4)), jnp.float32)
  if mask_kind == 'padding':
    mask = jnp.array([[True, True, True, False, False], [False] * 5])      # second example: nothing to attend
  else:
    mask = jnp.asarray(rng.random((2, 3, 5)) > 0.4).at[0, 1].set(False)   # one query with no key
  fused = jax.jit(lambda *a: attention.fused_scaled_dot_attend(*a, implementation='xla'))(q, k, v, mask)
  ours, _ = attention.multi_head_attend('scaled_dot', {}, q, k, v, mask)
  np.testing.assert_allclose(fused, ours, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fused, numpy_scaled_dot_context(q, k, v, mask), rtol=1e-5, atol=1e-6)
  empty = (1, slice(None)) if mask_kind == 'padding' else (0, 1)
  assert np.all(np.asarray(fused)[empty] == 0.0)


@pytest.mark.slow
def test_multi_head_module_xla_implementation_same_output_no_weights():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((2, 5, 8)), jnp.float32)
  mask = jnp.array([[True] * 5, [True, True, False, False, False]])
  vmapped = modules.MultiHeadAttention(num_heads=2)
  fused = modules.MultiHeadAttention(num_heads=2, implementation='xla')
  variables = vmapped.init(jax.random.key(0), x, x, mask)
  assert jax.tree.map(jnp.shape, fused.init(jax.random.key(0), x, x, mask)) == jax.tree.map(jnp.shape, variables)
  want, weights = vmapped.apply(variables, x, x, mask)
  got, no_weights = fused.apply(variables, x, x, mask)
  assert weights.shape == (2, 2, 5, 5) and no_weights is None
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Gradients agree too (training is what the fused path is for).
  loss = lambda module: lambda p: jnp.sum(module.apply(p, x, x, mask)[0] ** 2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               jax.grad(loss(fused))(variables), jax.grad(loss(vmapped))(variables))


def test_fused_implementation_errors():
  with pytest.raises(ValueError, match='Valid implementations: vmap, xla, cudnn'):
    modules.MultiHeadAttention(num_heads=2, implementation='flash')
  with pytest.raises(ValueError, match="needs scorer='scaled_dot' and weighting='softmax', not 'general'"):
    modules.MultiHeadAttention(num_heads=2, scorer='general', implementation='xla')
  q = jnp.ones((1, 3, 2, 4))
  if jax.default_backend() != 'gpu':
    with pytest.raises(ValueError, match="needs an NVIDIA GPU; the JAX backend here is 'cpu'"):
      attention.fused_scaled_dot_attend(q, q, q, implementation='cudnn')
  with pytest.raises(ValueError, match=r'mask must be \[B, S\] = \[1, 3\] or \[B, T, S\]'):
    attention.fused_scaled_dot_attend(q, q, q, jnp.ones((1, 4), bool))
  with pytest.raises(ValueError, match='same N and h'):
    attention.fused_scaled_dot_attend(q, jnp.ones((1, 3, 2, 5)), jnp.ones((1, 3, 2, 5)))


def test_transformer_encoder_with_fused_attention_gives_the_same_model():
  from attention_jax.models import build_model
  source = jnp.array([[5, 6, 7, 2, 0, 0], [4, 2, 0, 0, 0, 0]], jnp.int32)
  target_in = jnp.array([[1, 5, 6], [1, 4, 0]], jnp.int32)
  config = {'encoder': 'transformer', 'decoder': 'luong', 'scorer': 'dot', 'embed_dim': 8, 'hidden_dim': 8,
            'num_heads': 2, 'mlp_dim': 16, 'encoder_layers': 2}
  models = {impl: build_model({**config, 'transformer_attention': impl}, source_vocab_size=9, target_vocab_size=9,
                              max_source_length=6) for impl in ('vmap', 'xla')}
  variables = models['vmap'].init(jax.random.key(0), source, target_in)
  (want, want_w), (got, got_w) = (models[i].apply(variables, source, target_in) for i in ('vmap', 'xla'))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)     # the decoder's attention is unaffected
  with pytest.raises(ValueError, match='Unknown transformer_attention .flash.. Valid: vmap, xla, cudnn'):
    build_model({**config, 'transformer_attention': 'flash'}, source_vocab_size=9, target_vocab_size=9,
                max_source_length=6)


def _scan_count(fn, *args) -> int:
  return str(jax.make_jaxpr(fn)(*args)).count('scan[')


@pytest.mark.parametrize('scorer, weighting', [('additive', 'softmax'), ('coverage', 'sparsemax')])
def test_attention_module_chunks_long_query_sequences_with_the_same_results(monkeypatch, scorer, weighting):
  rng = np.random.default_rng(0)
  b, t, s, d = 2, 11, 5, 4
  query, keys = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((b, t, d), (b, s, d)))
  mask = jnp.asarray(rng.random((b, s)) > 0.3).at[:, 0].set(True)
  state = {'coverage': jnp.full((b, t, s), 0.1)} if scorer == 'coverage' else {}
  options = FrozenDict({'hidden_dim': 3})
  variables = modules.Attention(scorer, weighting, options).init(jax.random.key(0), query, keys, keys, mask, **state)
  # A threshold the test's T * S * H = 11 * 5 * 3 reaches, and chunks of 4 (two, and the last 3 positions).
  monkeypatch.setattr(memory_efficient, 'CHUNK_ELEMENTS', t * s * 3)
  monkeypatch.setattr(memory_efficient, 'DEFAULT_CHUNK_SIZE', 4)
  outputs, scans = {}, {}
  for chunks in ('auto', 'off', 5):
    module = modules.Attention(scorer, weighting, options, query_chunks=chunks)

    def forward(params, query, keys, module=module):
      return module.apply({'params': params}, query, keys, keys, mask, **state)

    def loss(params, query, keys, forward=forward):
      context, weights = forward(params, query, keys)
      return jnp.sum(context ** 2) + jnp.sum(weights[..., 1])

    def prepared(params, query, keys, module=module):   # the decoders' path: keys prepared once, then scores
      def run(m):
        keys_prepared = m.prepare_keys(keys, query_dim=d)
        return m.attend_prepared(query, keys_prepared, keys, mask, **state), m.score_prepared(
            query, keys_prepared, **state)
      return nn.apply(run, module)({'params': params})

    outputs[chunks] = (forward(variables['params'], query, keys),
                       jax.grad(loss, argnums=(0, 1, 2))(variables['params'], query, keys),
                       prepared(variables['params'], query, keys))
    scans[chunks] = _scan_count(forward, variables['params'], query, keys)
    assert _scan_count(prepared, variables['params'], query, keys) == 2 * scans[chunks]
  assert scans == {'auto': 1, 'off': 0, 5: 1}
  for chunks in ('auto', 5):
    jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6),
                 outputs[chunks], outputs['off'])
  monkeypatch.setattr(memory_efficient, 'CHUNK_ELEMENTS', t * s * 3 + 1)    # just below: all at once
  module = modules.Attention(scorer, weighting, options)
  assert _scan_count(lambda p: module.apply({'params': p}, query, keys, keys, mask, **state),
                     variables['params']) == 0


@pytest.mark.parametrize('bad', ['on', 0, -2, 2.5, True, None])
def test_attention_module_rejects_bad_query_chunks(bad):
  with pytest.raises(ValueError, match="query_chunks must be 'auto', 'off' or a positive number"):
    modules.Attention('additive', query_chunks=bad)
