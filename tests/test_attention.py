"""attend / batched_attend: composition, vmap == loop, jit == no-jit, masking, dtypes, gradients, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import attention
from attention_jax import scoring
from tests.test_scoring import CASES, CASE_IDS, S, make_inputs

B, T, D_V = 2, 3, 2


def batch_inputs(name, options, seed=0, with_time=True):
  """params, query [B, (T,) d_q], keys [B, S, d_k], values [B, S, d_v], mask [B, S], state."""
  lead = (B, T) if with_time else (B,)
  params, _, _, _ = make_inputs(name, options, seed)
  _, query, _, state = make_inputs(name, options, seed + 1, batch=lead)
  _, _, keys, _ = make_inputs(name, options, seed + 2, batch=(B,))
  rng = np.random.default_rng(seed)
  values = jnp.asarray(rng.standard_normal((B, S, D_V)), jnp.float32)
  mask = jnp.asarray(rng.random((B, S)) > 0.3).at[:, 0].set(True)
  return params, query, keys, values, mask, state


def test_attend_composes_score_softmax_and_weighted_sum():
  params, query, keys, state = make_inputs('general', {})
  values = jnp.asarray(np.random.default_rng(0).standard_normal((S, D_V)), jnp.float32)
  mask = jnp.array([True, True, False, True, True, False, True])
  context, weights = attention.attend('general', params, query, keys, values, mask)
  scores = np.asarray(scoring.get('general')(params, query, keys), np.float64)
  want_w = np.where(mask, np.exp(scores - scores.max()), 0.0)
  want_w /= want_w.sum()
  np.testing.assert_allclose(weights, want_w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(context, want_w @ np.asarray(values, np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name,options,reference', CASES, ids=CASE_IDS)
def test_batched_equals_python_loop_and_jit_equals_nojit(name, options, reference):
  del reference
  params, query, keys, values, mask, state = batch_inputs(name, options)
  ctx, w = attention.batched_attend(name, params, query, keys, values, mask, **state)
  assert ctx.shape == (B, T, D_V) and w.shape == (B, T, S)
  for b in range(B):
    for t in range(T):
      c_bt, w_bt = attention.attend(name, params, query[b, t], keys[b], values[b], mask[b],
                                    **{k: v[b, t] for k, v in state.items()})
      np.testing.assert_allclose(ctx[b, t], c_bt, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(w[b, t], w_bt, rtol=1e-5, atol=1e-7)
  jitted = jax.jit(functools.partial(attention.batched_attend, name))
  ctx_j, w_j = jitted(params, query, keys, values, mask, **state)
  np.testing.assert_allclose(ctx_j, ctx, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(w_j, w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name,options,reference', CASES, ids=CASE_IDS)
def test_masked_positions_cannot_change_the_output(name, options, reference):
  del reference
  params, query, keys, values, mask, state = batch_inputs(name, options, with_time=False)
  ctx, w = attention.batched_attend(name, params, query, keys, values, mask, **state)
  noise = jnp.asarray(np.random.default_rng(9).standard_normal(keys.shape) * 100, jnp.float32)
  keys2 = jnp.where(mask[..., None], keys, noise)
  values2 = jnp.where(mask[..., None], values, 1e4)
  ctx2, w2 = attention.batched_attend(name, params, query, keys2, values2, mask, **state)
  np.testing.assert_allclose(ctx2, ctx, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(w2, w, rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(w)[~np.asarray(mask)] == 0.0)
  np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize('weighting', ['softmax', 'sparsemax'])
@pytest.mark.parametrize('name', ['additive', 'scaled_dot', 'cosine'])
def test_fully_masked_example_gives_zero_context_and_finite_gradients(name, weighting):
  options = {'hidden_dim': 4} if name == 'additive' else {}
  params, query, keys, values, mask, state = batch_inputs(name, options, with_time=False)
  mask = mask.at[1].set(False)

  def loss(params, query, keys, values):
    ctx, w = attention.batched_attend(name, params, query, keys, values, mask, weighting=weighting)
    return jnp.sum(ctx ** 2) + jnp.sum(w)

  ctx, w = attention.batched_attend(name, params, query, keys, values, mask, weighting=weighting)
  np.testing.assert_array_equal(ctx[1], np.zeros(D_V))
  np.testing.assert_array_equal(w[1], np.zeros(S))
  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(params, query, keys, values)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  np.testing.assert_array_equal(grads[1][1], np.zeros_like(query[1]))   # nothing flows from an empty row


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize('name', ['additive', 'general', 'scaled_dot'])
def test_low_precision_inputs_stay_finite_and_close(name, dtype):
  options = {'hidden_dim': 4} if name == 'additive' else {}
  params, query, keys, values, mask, _ = batch_inputs(name, options)
  mask = mask.at[0].set(False)
  low = lambda x: x.astype(dtype)
  ctx, w = attention.batched_attend(name, jax.tree.map(low, params), low(query), low(keys), low(values), mask)
  ctx32, w32 = attention.batched_attend(name, params, query, keys, values, mask)
  assert w.dtype == jnp.float32 and ctx.dtype == dtype
  assert np.all(np.isfinite(np.asarray(ctx, np.float32))) and np.all(np.isfinite(w))
  np.testing.assert_allclose(w, w32, atol=3e-2)
  np.testing.assert_allclose(np.asarray(ctx, np.float32), ctx32, atol=6e-2)
  np.testing.assert_array_equal(np.asarray(ctx[0], np.float32), 0.0)


def test_per_query_mask_and_state_batched():
  params, query, keys, values, _, state = batch_inputs('location_aware', {'hidden_dim': 4})
  mask_BTS = jnp.asarray(np.random.default_rng(3).random((B, T, S)) > 0.4).at[..., 0].set(True)
  _, w = attention.batched_attend('location_aware', params, query, keys, values, mask_BTS, **state)
  for b in range(B):
    for t in range(T):
      _, w_bt = attention.attend('location_aware', params, query[b, t], keys[b], values[b], mask_BTS[b, t],
                                 prev_weights=state['prev_weights'][b, t])
      np.testing.assert_allclose(w[b, t], w_bt, rtol=1e-5, atol=1e-7)


def test_attend_gradients_wrt_everything():
  params, query, keys, values, mask, _ = batch_inputs('additive', {'hidden_dim': 4}, with_time=False)
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
    fn = lambda p, q, k, v: attention.batched_attend('additive', p, q, k, v, mask)
    check_grads(fn, f64((params, query, keys, values)), order=1, modes=['rev'], atol=1e-5, rtol=1e-5)


def test_multi_head_scaled_dot_matches_jax_dot_product_attention():
  rng = np.random.default_rng(4)
  q = jnp.asarray(rng.standard_normal((2, 5, 3, 8)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((2, 6, 3, 8)), jnp.float32)
  v = jnp.asarray(rng.standard_normal((2, 6, 3, 8)), jnp.float32)
  mask = jnp.asarray(rng.random((2, 6)) > 0.3).at[:, 0].set(True)
  ctx, w = attention.multi_head_attend('scaled_dot', {}, q, k, v, mask)
  want = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
  assert ctx.shape == (2, 5, 3, 8) and w.shape == (2, 3, 5, 6)
  np.testing.assert_allclose(ctx, want, rtol=1e-5, atol=1e-6)


def test_batched_errors_name_the_shapes():
  params, query, keys, values, mask, _ = batch_inputs('general', {}, with_time=False)
  with pytest.raises(ValueError, match=r'mask must have shape \[B, S\] = \(2, 7\).*got shape \(2, 6\)'):
    attention.batched_attend('general', params, query, keys, values, mask[:, :6])
  with pytest.raises(ValueError, match=r'values must have shape \[B, S, d_v\] = \[2, 7, d_v\].*\(2, 6, 2\)'):
    attention.batched_attend('general', params, query, keys, values[:, :6], mask)
  with pytest.raises(ValueError, match=r'query must have shape \[B, d_q\] or \[B, T, d_q\] with B = 2'):
    attention.batched_attend('general', params, query[:1], keys, values, mask)
  with pytest.raises(ValueError, match=r'keys must have shape \[B, S, d_k\]'):
    attention.batched_attend('general', params, query, keys[0], values, mask)
  with pytest.raises(ValueError, match='Unknown scorer'):
    attention.batched_attend('luong', params, query, keys, values, mask)
