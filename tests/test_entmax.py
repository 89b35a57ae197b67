"""entmax15 and entmax_bisect against a float64 numpy bisection written from Peters et al. 2019's definition,
with masks, fully masked rows, bf16 inputs, jit, vmap, and the custom VJPs against numpy finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import weighting


def np_entmax(z, alpha, mask=None):
  """argmax_p p.z + H_alpha(p) on the simplex: p_j = [(alpha - 1) z_j - tau]_+^(1 / (alpha - 1)), tau by 200
  float64 bisections on sum_j p_j = 1; masked positions excluded (all-zero when none is left)."""
  z = np.asarray(z, np.float64)
  keep = np.ones_like(z, bool) if mask is None else np.asarray(mask, bool)
  if not keep.any():
    return np.zeros_like(z)
  x = (alpha - 1.0) * z[keep]
  lo, hi = x.max() - 1.0, x.max()
  for _ in range(200):
    tau = (lo + hi) / 2
    if (np.maximum(x - tau, 0) ** (1 / (alpha - 1))).sum() > 1:
      lo = tau
    else:
      hi = tau
  p = np.zeros_like(z)
  p[keep] = np.maximum(x - (lo + hi) / 2, 0) ** (1 / (alpha - 1))
  return p / p.sum()


def rows(seed=0, shape=(5, 7)):
  rng = np.random.default_rng(seed)
  scores = rng.standard_normal(shape) * 2.0
  mask = rng.random(shape) > 0.3
  mask[0] = True
  mask[1] = False                        # a fully masked row
  mask[2, :] = False
  mask[2, 3] = True                      # a single attended position
  return scores, mask


@pytest.mark.parametrize('name, fn, alpha', [
    ('entmax15', weighting.entmax15, 1.5),
    ('bisect 1.5', weighting.entmax_bisect, 1.5),
    ('bisect 1.25', lambda s, m: weighting.entmax_bisect(s, m, alpha=1.25), 1.25),
    ('bisect 1.8', lambda s, m: weighting.entmax_bisect(s, m, alpha=1.8), 1.8)])
def test_entmax_matches_numpy_with_masks(name, fn, alpha):
  scores, mask = rows()
  got = np.asarray(fn(jnp.asarray(scores, jnp.float32), jnp.asarray(mask)))
  want = np.stack([np_entmax(z, alpha, m) for z, m in zip(scores, mask)])
  np.testing.assert_allclose(got, want, atol=2e-5, err_msg=name)
  assert np.all(got[~mask] == 0.0) and np.all(got[1] == 0.0)
  np.testing.assert_allclose(got[[0, 2, 3, 4]].sum(-1), 1.0, rtol=1e-5)
  if alpha >= 1.5:
    assert (got[0] == 0).any(), 'entmax is sparse on spread-out scores'


def test_entmax15_equals_bisection_and_alpha_2_is_sparsemax():
  scores, mask = rows(1, (6, 9))
  s, m = jnp.asarray(scores, jnp.float32), jnp.asarray(mask)
  np.testing.assert_allclose(weighting.entmax15(s, m), weighting.entmax_bisect(s, m, alpha=1.5), atol=1e-5)
  np.testing.assert_allclose(weighting.entmax_bisect(s, m, alpha=2.0), weighting.sparsemax(s, m), atol=1e-5)
  # alpha -> 1 approaches softmax.
  np.testing.assert_allclose(weighting.entmax_bisect(s, m, alpha=1.01), weighting.masked_softmax(s, m), atol=2e-2)


@pytest.mark.parametrize('fn', [weighting.entmax15, weighting.entmax_bisect])
def test_jit_vmap_bf16_and_the_registry(fn):
  scores, mask = rows(2)
  s, m = jnp.asarray(scores, jnp.float32), jnp.asarray(mask)
  eager = fn(s, m)
  np.testing.assert_allclose(jax.jit(fn)(s, m), eager, atol=1e-6)
  looped = jnp.stack([fn(s[i], m[i]) for i in range(len(s))])
  np.testing.assert_allclose(jax.vmap(fn)(s, m), looped, atol=1e-6)
  np.testing.assert_allclose(eager, looped, atol=1e-6)
  low = fn(s.astype(jnp.bfloat16), m)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, fn(s.astype(jnp.bfloat16).astype(jnp.float32), m), atol=1e-6)
  assert weighting.get('entmax15') is weighting.entmax15


def numpy_jacobian(z, alpha, mask, eps=1e-6):
  return np.stack([(np_entmax(z + eps * e, alpha, mask) - np_entmax(z - eps * e, alpha, mask)) / (2 * eps)
                   for e in np.eye(len(z))], axis=1)


@pytest.mark.parametrize('fn, alpha', [(weighting.entmax15, 1.5),
                                       (lambda s, m: weighting.entmax_bisect(s, m, alpha=1.3), 1.3)])
def test_custom_vjp_equals_the_numpy_jacobian(fn, alpha):
  scores, mask = rows(3)
  cotangent = np.random.default_rng(4).standard_normal(scores.shape)
  for z, m, g in zip(scores, mask, cotangent):
    _, vjp = jax.vjp(lambda s: fn(s, jnp.asarray(m)), jnp.asarray(z, jnp.float32))
    got = np.asarray(vjp(jnp.asarray(g, jnp.float32))[0])
    assert np.all(np.isfinite(got))
    want = g @ numpy_jacobian(z, alpha, m) if m.any() else np.zeros_like(z)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_check_grads_and_fully_masked_rows_have_finite_zero_gradients():
  scores = jnp.array([[0.3, -0.4, 1.1, 0.2], [1.0, 2.0, 3.0, 4.0]])
  mask = jnp.array([[True, True, True, False], [False, False, False, False]])
  for fn in (weighting.entmax15, weighting.entmax_bisect):
    check_grads(lambda s: fn(s, mask[:1]), (scores[:1],), order=1, modes=('rev',), atol=1e-2, rtol=1e-2)
    grad = jax.grad(lambda s: jnp.sum(fn(s, mask) * jnp.arange(4.0)))(scores)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[1] == 0.0)


def test_bad_alpha_is_a_clear_error():
  with pytest.raises(ValueError, match='alpha > 1'):
    weighting.entmax_bisect(jnp.zeros(3), alpha=1.0)
  with pytest.raises(ValueError, match="Valid weightings: entmax15, softmax, sparsemax"):
    weighting.get('entmax')
