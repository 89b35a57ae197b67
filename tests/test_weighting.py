"""Masked softmax and sparsemax: numbers, masks, fully masked rows, low precision, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import weighting


def np_sparsemax(z):
  """Sparsemax by bisection on the threshold tau (independent of the sort-based implementation)."""
  lo, hi = z.max() - 1.0, z.max()
  for _ in range(200):
    tau = (lo + hi) / 2
    if np.maximum(z - tau, 0).sum() > 1:
      lo = tau
    else:
      hi = tau
  return np.maximum(z - (lo + hi) / 2, 0)


def test_masked_softmax_matches_numpy():
  rng = np.random.default_rng(0)
  scores = rng.standard_normal((3, 6))
  mask = np.array([[1, 1, 0, 1, 0, 1], [1] * 6, [0, 0, 0, 0, 0, 1]], bool)
  want = np.where(mask, np.exp(scores), 0.0)
  want /= want.sum(-1, keepdims=True)
  got = weighting.masked_softmax(jnp.asarray(scores, jnp.float32), jnp.asarray(mask))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(got)[~mask] == 0.0)


@pytest.mark.parametrize('fn', [weighting.masked_softmax, weighting.sparsemax])
def test_fully_masked_row_gives_zero_weights_and_finite_gradients(fn):
  scores = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
  mask = jnp.array([[False, False, False], [True, False, True]])
  weights = fn(scores, mask)
  np.testing.assert_array_equal(weights[0], [0.0, 0.0, 0.0])
  np.testing.assert_allclose(weights[1].sum(), 1.0, rtol=1e-6)
  grads = jax.grad(lambda s: jnp.sum(fn(s, mask) * jnp.arange(3.0)))(scores)
  assert np.all(np.isfinite(grads))
  np.testing.assert_array_equal(grads[0], [0.0, 0.0, 0.0])


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize('fn', [weighting.masked_softmax, weighting.sparsemax])
def test_low_precision_scores_are_weighted_in_float32(fn, dtype):
  rng = np.random.default_rng(1)
  scores = rng.standard_normal((4, 9)) * 3
  mask = rng.random((4, 9)) > 0.3
  mask[0] = False                                   # a fully masked row in low precision
  low = jnp.asarray(scores, dtype)
  got = fn(low, jnp.asarray(mask))
  want = fn(low.astype(jnp.float32), jnp.asarray(mask))
  assert got.dtype == jnp.float32
  assert np.all(np.isfinite(got))
  np.testing.assert_array_equal(got, want)          # identical: the cast happens before any arithmetic
  np.testing.assert_array_equal(got[0], np.zeros(9))


def test_sparsemax_matches_bisection_reference_and_is_sparse():
  rng = np.random.default_rng(2)
  scores = rng.standard_normal((5, 8)) * 2
  got = np.asarray(weighting.sparsemax(jnp.asarray(scores)))
  want = np.stack([np_sparsemax(row) for row in scores])
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)
  assert (got == 0).sum() > 0


def test_sparsemax_masked_equals_sparsemax_of_the_unmasked_part():
  scores = jnp.array([0.1, 3.0, 2.7, -1.0, 2.9])
  mask = jnp.array([True, False, True, True, True])
  got = weighting.sparsemax(scores, mask)
  want = np.zeros(5)
  want[[0, 2, 3, 4]] = np_sparsemax(np.asarray(scores)[[0, 2, 3, 4]])
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('fn', [weighting.masked_softmax, weighting.sparsemax])
def test_weighting_gradients(fn):
  scores = np.array([[0.3, -1.2, 0.9, 0.35], [1.5, 0.2, -0.4, 0.7]])
  mask = jnp.array([[True, True, False, True], [True, True, True, True]])
  with jax.enable_x64(True):
    check_grads(lambda s: fn(s, mask), (jnp.asarray(scores, jnp.float64),), order=1, modes=['rev', 'fwd'],
                atol=1e-6, rtol=1e-6)


def test_bad_masks_are_rejected_with_shapes():
  with pytest.raises(ValueError, match=r'mask of shape \(2, 4\) does not broadcast to scores of shape \(2, 5\)'):
    weighting.masked_softmax(jnp.ones((2, 5)), jnp.ones((2, 4), bool))
  with pytest.raises(TypeError, match='mask must be boolean'):
    weighting.masked_softmax(jnp.ones((2, 5)), jnp.ones((2, 5)))


def test_unknown_weighting_lists_valid_ones():
  with pytest.raises(ValueError, match='Unknown weighting .*entmax2.*Valid weightings: entmax15, softmax, sparsemax'):
    weighting.get('entmax2')
