"""Chunked attention equals the vmapped reference (values, masks, gradients) and needs less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import attention
from attention_jax import memory_efficient
from attention_jax import scoring
from attention_jax.memory_efficient import chunked_batched_attend


def inputs(name, b=2, t=7, s=5, d=4, seed=0):
  rng = np.random.default_rng(seed)
  options = {'hidden_dim': 3} if 'hidden_dim' in scoring.get(name).options else {}
  params = scoring.init(name, jax.random.key(seed), d, d, **options)
  f = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
  mask = jnp.asarray(rng.random((b, s)) > 0.3).at[:, 0].set(True).at[1].set(False)   # example 1 fully masked
  state = {'prev_weights': jnp.asarray(rng.dirichlet(np.ones(s), size=(b, t)), jnp.float32)} \
      if scoring.get(name).state_names else {}
  return params, f(b, t, d), f(b, s, d), f(b, s, 3), mask, state


@pytest.mark.parametrize('chunk_size', [1, 3, 7, 16])
@pytest.mark.parametrize('name', ['additive', 'concat', 'location_aware', 'scaled_dot'])
def test_chunked_equals_reference(name, chunk_size):
  params, query, keys, values, mask, state = inputs(name)
  want = attention.batched_attend(name, params, query, keys, values, mask, **state)
  got = chunked_batched_attend(name, params, query, keys, values, mask, chunk_size=chunk_size, **state)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got[1][1], 0.0)


def test_chunked_gradients_and_per_query_mask():
  params, query, keys, values, _, _ = inputs('additive')
  mask = jnp.asarray(np.random.default_rng(1).random((2, 7, 5)) > 0.4).at[..., 0].set(True)
  loss = lambda fn: lambda p, q, k, v: jnp.sum(fn(p, q, k, v)[0] ** 2)
  reference = loss(lambda p, q, k, v: attention.batched_attend('additive', p, q, k, v, mask))
  chunked = loss(lambda p, q, k, v: chunked_batched_attend('additive', p, q, k, v, mask, chunk_size=2))
  grads_want = jax.grad(reference, argnums=(0, 1, 2, 3))(params, query, keys, values)
  grads_got = jax.grad(chunked, argnums=(0, 1, 2, 3))(params, query, keys, values)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5), grads_got, grads_want)


def test_chunked_needs_less_memory_for_long_sources():
  params, _, _, _, _, _ = inputs('additive', d=32)
  params = scoring.init('additive', jax.random.key(0), 32, 32, hidden_dim=64)
  query, keys = jnp.ones((4, 128, 32)), jnp.ones((4, 256, 32))

  def temp_bytes(fn):
    grad = jax.jit(jax.grad(lambda q, k: jnp.sum(fn(params, q, k, k, None)[0])))
    return grad.lower(query, keys).compile().memory_analysis().temp_size_in_bytes

  full = temp_bytes(lambda *a: attention.batched_attend('additive', *a))
  chunked = temp_bytes(lambda *a: chunked_batched_attend('additive', *a, chunk_size=8))
  assert chunked < full / 4, (chunked, full)


def test_bad_chunk_inputs():
  params, query, keys, values, mask, _ = inputs('general')
  with pytest.raises(ValueError, match=r'needs query \[B, T, d_q\]'):
    chunked_batched_attend('general', params, query[:, 0], keys, values, mask)
  with pytest.raises(ValueError, match='chunk_size must be positive'):
    chunked_batched_attend('general', params, query, keys, values, mask, chunk_size=0)


@pytest.mark.parametrize('chunk_size', [2, 7])
@pytest.mark.parametrize('name', ['location_aware', 'coverage', 'general'])
def test_chunked_scores_and_prepared_attention_equal_reference(name, chunk_size):
  params, query, keys, values, mask, state = inputs(name)
  if name == 'coverage':
    state = {'coverage': jnp.cumsum(jnp.full((2, 7, 5), 0.2), axis=1)}
  cache = attention.batched_prepare_keys(name, params, keys)
  np.testing.assert_allclose(
      memory_efficient.chunked_batched_score_prepared(name, params, query, cache, chunk_size=chunk_size, **state),
      attention.batched_score_prepared(name, params, query, cache, **state), rtol=1e-5, atol=1e-6)
  got = memory_efficient.chunked_batched_attend_prepared(name, params, query, cache, values, mask,
                                                         chunk_size=chunk_size, weighting='sparsemax', **state)
  want = attention.batched_attend_prepared(name, params, query, cache, values, mask, weighting='sparsemax', **state)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_hidden_size_is_declared_by_the_tanh_mlp_scorers_only():
  for name in scoring.names():
    options = dict(hidden_dim=5) if 'hidden_dim' in scoring.get(name).options else {}
    params = scoring.init(name, jax.random.key(0), 4, 4, **scoring.with_source_length(name, options, 6))
    elements = memory_efficient.hidden_layer_elements(name, params, query_length=3, source_length=6)
    if name in ('additive', 'concat', 'location_aware', 'coverage'):
      assert scoring.get(name).hidden_size(params) == 5 and elements == 3 * 6 * 5
    else:
      assert scoring.get(name).hidden_size is None and elements == 0


def test_chunk_size_for_chunks_long_tanh_mlp_attention_only():
  params = scoring.init('additive', jax.random.key(0), 4, 4, hidden_dim=128)
  query = lambda t: jnp.zeros((2, t, 4))
  reaching = -(-memory_efficient.CHUNK_ELEMENTS // (64 * 128))   # the fewest keys S with 64 * S * 128 >= threshold
  long_source = 640 * reaching                                    # far above the threshold for T >= 1
  chunk = memory_efficient.DEFAULT_CHUNK_SIZE
  assert memory_efficient.chunk_size_for('additive', params, query(64), reaching) == chunk
  assert memory_efficient.chunk_size_for('additive', params, query(64), reaching - 1) is None
  assert memory_efficient.chunk_size_for('additive', params, query(chunk), long_source) is None     # one chunk
  assert memory_efficient.chunk_size_for('additive', params, jnp.zeros((2, 4)), long_source) is None  # [B, d_q]
  assert memory_efficient.chunk_size_for('general', scoring.init('general', jax.random.key(0), 4, 4), query(64),
                                         long_source) is None


def test_chunk_size_for_leaves_accelerators_all_at_once(monkeypatch):
  params = scoring.init('additive', jax.random.key(0), 4, 4, hidden_dim=128)
  long_query, long_source = jnp.zeros((2, 64, 4)), memory_efficient.CHUNK_ELEMENTS
  assert memory_efficient.chunk_size_for('additive', params, long_query, long_source) is not None
  for backend in ('gpu', 'tpu'):
    monkeypatch.setattr(jax, 'default_backend', lambda backend=backend: backend)
    assert memory_efficient.chunk_size_for('additive', params, long_query, long_source) is None


def test_chunked_attention_checks_its_inputs():
  params, query, keys, values, mask, _ = inputs('additive')
  with pytest.raises(ValueError, match=r'values must have shape \[B, S, d_v\]'):
    chunked_batched_attend('additive', params, query, keys, values[:, :3], mask)
  with pytest.raises(ValueError, match=r'mask must have shape'):
    chunked_batched_attend('additive', params, query, keys, values, mask[:, :3])


def test_chunked_attention_of_no_query_positions_is_empty():
  params, query, keys, values, mask, _ = inputs('additive')
  context, weights = chunked_batched_attend('additive', params, query[:, :0], keys, values, mask, chunk_size=3)
  assert context.shape == (2, 0, 3) and weights.shape == (2, 0, 5)
