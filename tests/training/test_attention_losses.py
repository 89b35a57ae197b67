"""Attention losses (coverage, guided alignment) and the GNMT coverage penalty against numpy loops written from
the papers' equations; masks, rows without links, zero weights, gradients, jit."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from attention_jax import decoding
from attention_jax.training import attention_losses


def random_case(seed=0, b=2, t=5, s=6):
  rng = np.random.default_rng(seed)
  weights = rng.dirichlet(np.ones(s), size=(b, t))
  target_mask = np.ones((b, t), bool)
  target_mask[1, 3:] = False
  gold = (rng.random((b, t, s)) > 0.7).astype(np.float64)
  gold[0, 1] = 0.0                                   # a target token without links
  return weights, target_mask, gold


def np_coverage_loss(weights, target_mask):
  """See et al. 2017 eq. 12: sum_t sum_i min(a_t,i, c_t,i), c_t = sum_{t'<t} a_t'."""
  total = 0.0
  for b in range(weights.shape[0]):
    for t in range(weights.shape[1]):
      if not target_mask[b, t]:
        continue
      c = weights[b, :t].sum(0)
      total += np.minimum(weights[b, t], c).sum()
  return total


def np_guided(weights, gold, target_mask):
  total, rows = 0.0, 0
  for b in range(weights.shape[0]):
    for t in range(weights.shape[1]):
      if not target_mask[b, t] or gold[b, t].sum() == 0:
        continue
      g = gold[b, t] / gold[b, t].sum()
      total += -(g * np.log(np.maximum(weights[b, t], 1e-9))).sum()
      rows += 1
  return total, rows


def test_coverage_loss_matches_see_et_al():
  weights, target_mask, _ = random_case()
  got = attention_losses.coverage_loss_sum(jnp.asarray(weights, jnp.float32), jnp.asarray(target_mask))
  np.testing.assert_allclose(got, np_coverage_loss(weights, target_mask), rtol=1e-5)
  # The first step has no coverage yet, so a single step costs nothing; attending twice to one token costs.
  one_hot = jnp.zeros((1, 2, 3)).at[0, :, 1].set(1.0)
  assert float(attention_losses.coverage_loss_sum(one_hot[:, :1], jnp.ones((1, 1), bool))) == 0.0
  assert float(attention_losses.coverage_loss_sum(one_hot, jnp.ones((1, 2), bool))) == 1.0
  moving = jnp.eye(3)[None, :2]                       # a different token each step: no repetition
  assert float(attention_losses.coverage_loss_sum(moving, jnp.ones((1, 2), bool))) == 0.0


def test_guided_alignment_matches_cross_entropy_to_normalised_links():
  weights, target_mask, gold = random_case(1)
  got, rows = attention_losses.guided_alignment_loss_sum(jnp.asarray(weights, jnp.float32), jnp.asarray(gold),
                                                         jnp.asarray(target_mask))
  want, want_rows = np_guided(weights, gold, target_mask)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(rows) == want_rows


def test_attention_losses_have_finite_gradients_with_zero_weights():
  weights, target_mask, gold = random_case(2)
  sparse = np.where(weights > 0.2, weights, 0.0)     # zeros as sparsemax or hard attention give them
  loss = lambda w: (attention_losses.guided_alignment_loss_sum(w, jnp.asarray(gold), jnp.asarray(target_mask))[0]
                    + attention_losses.coverage_loss_sum(w, jnp.asarray(target_mask)))
  grads = jax.grad(loss)(jnp.asarray(sparse, jnp.float32))
  assert np.all(np.isfinite(grads))
  np.testing.assert_allclose(jax.jit(loss)(jnp.asarray(sparse, jnp.float32)), loss(jnp.asarray(sparse, jnp.float32)),
                             rtol=1e-6)
  check_grads(lambda w: attention_losses.guided_alignment_loss_sum(w, jnp.asarray(gold), jnp.asarray(target_mask))[0],
              (jnp.asarray(weights, jnp.float32),), order=1, modes=['rev'], atol=1e-2, rtol=1e-2)


def test_gnmt_coverage_penalty_matches_numpy():
  rng = np.random.default_rng(3)
  weights = rng.dirichlet(np.ones(5), size=(2, 3, 4)) * 0.6       # [B=2, K=3, T=4, S=5]
  mask = np.array([[True] * 5, [True, True, True, False, False]])
  got = decoding.coverage_penalty(jnp.asarray(weights, jnp.float32), jnp.asarray(mask)[:, None, :], 0.4)
  want = np.zeros((2, 3))
  for b in range(2):
    for k in range(3):
      total = weights[b, k].sum(0)
      want[b, k] = 0.4 * sum(np.log(min(total[i], 1.0)) for i in range(5) if mask[b, i])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(decoding.coverage_penalty(jnp.ones((1, 2, 3)), jnp.ones((1, 3), bool), 1.0)[0]) == 0.0


def test_attention_losses_take_bfloat16_weights_and_vmap_like_a_loop():
  weights, target_mask, gold = random_case(4)
  w32 = jnp.asarray(weights, jnp.float32)
  got = attention_losses.coverage_loss_sum(w32.astype(jnp.bfloat16), jnp.asarray(target_mask))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_coverage_loss(np.asarray(w32.astype(jnp.bfloat16), np.float64), target_mask),
                             rtol=1e-4)
  per_example = jax.vmap(lambda w, m: attention_losses.coverage_loss_sum(w[None], m[None]))(
      w32, jnp.asarray(target_mask))
  np.testing.assert_allclose(per_example.sum(), attention_losses.coverage_loss_sum(w32, jnp.asarray(target_mask)),
                             rtol=1e-6)
