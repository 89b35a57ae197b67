"""Local attention (Luong et al. 2015, eq. 10) and the expected alignment of monotonic attention (Raffel et al.
2017) against numpy loops written from the papers' equations; recursive == parallel; jit, vmap, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import weighting


def np_local(scores, mask, center, window):
  """align(h_t, h_s) = softmax over s in [p_t - D, p_t + D] (attended), times exp(-(s - p_t)^2 / (2 (D/2)^2))."""
  s = np.arange(len(scores))
  inside = (np.abs(s - center) <= window) & mask
  out = np.zeros(len(scores))
  if inside.any():
    e = np.exp(scores[inside] - scores[inside].max())
    out[inside] = e / e.sum()
  return out * np.exp(-(s - center) ** 2 / (2 * (window / 2) ** 2))


def np_monotonic(p, prev):
  """a_i = p_i sum_{k<=i} prev_k prod_{l=k}^{i-1} (1 - p_l), as three loops."""
  out = np.zeros(len(p))
  for i in range(len(p)):
    total = 0.0
    for k in range(i + 1):
      product = 1.0
      for l in range(k, i):
        product *= 1 - p[l]
      total += prev[k] * product
    out[i] = p[i] * total
  return out


@pytest.mark.parametrize('center, window', [(3, 2), (4.3, 2), (0.0, 3), (8.7, 1), (5, 1)])
def test_local_weights_match_numpy(center, window):
  rng = np.random.default_rng(0)
  scores = rng.standard_normal(10)
  mask = np.ones(10, bool)
  mask[8:] = False
  got = weighting.local_weights(jnp.asarray(scores, jnp.float32), jnp.asarray(mask), center, window)
  np.testing.assert_allclose(got, np_local(scores, mask, center, window), atol=1e-6)
  assert np.all(np.asarray(got)[~mask] == 0.0) and float(got.sum()) <= 1.0 + 1e-6


def test_local_m_with_a_window_covering_the_source_is_global_times_the_gaussian():
  rng = np.random.default_rng(1)
  scores, mask = rng.standard_normal(7), np.array([1, 1, 1, 1, 1, 0, 0], bool)
  window, t = 8, 2
  got = weighting.local_weights(jnp.asarray(scores, jnp.float32), jnp.asarray(mask), t, window)
  gaussian = np.exp(-(np.arange(7) - t) ** 2 / (2 * (window / 2) ** 2))
  want = np.asarray(weighting.masked_softmax(jnp.asarray(scores, jnp.float32), jnp.asarray(mask))) * gaussian
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_local_weights_jit_vmap_and_gradients_through_the_center():
  rng = np.random.default_rng(2)
  scores = jnp.asarray(rng.standard_normal((4, 9)), jnp.float32)
  mask = jnp.asarray(rng.random((4, 9)) > 0.2)
  centers = jnp.array([1.5, 4.0, 6.2, 8.0])
  fn = lambda s, m, c: weighting.local_weights(s, m, c, 2)
  batched = jax.vmap(fn)(scores, mask, centers)
  np.testing.assert_allclose(batched, jnp.stack([fn(scores[i], mask[i], centers[i]) for i in range(4)]), atol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.vmap(fn))(scores, mask, centers), batched, atol=1e-6)
  # local-p learns p_t through the Gaussian factor.
  check_grads(lambda c: fn(scores[1], mask[1], c), (jnp.float32(4.2),), order=1, modes=('rev',), atol=1e-2,
              rtol=1e-2)
  assert float(jnp.abs(jax.grad(lambda c: fn(scores[1], mask[1], c) @ jnp.arange(9.0))(4.2))) > 0
  with pytest.raises(ValueError, match='window D >= 1'):
    weighting.local_weights(scores[0], None, 1.0, 0)


@pytest.mark.parametrize('mode', ['parallel', 'recursive'])
def test_monotonic_weights_match_the_equation(mode):
  rng = np.random.default_rng(3)
  p = rng.uniform(0.05, 0.95, 8)
  p[6:] = 0.0                                   # padding
  first = np.eye(8)[0]                          # the first output step
  later = np_monotonic(p, first)
  for prev in (first, later, rng.dirichlet(np.ones(8))):
    got = weighting.monotonic_weights(jnp.asarray(p, jnp.float32), jnp.asarray(prev, jnp.float32), mode)
    np.testing.assert_allclose(got, np_monotonic(p, prev), atol=1e-5)
    assert np.all(np.asarray(got)[6:] == 0.0) and float(got.sum()) <= 1.0 + 1e-5


def test_monotonic_recursive_equals_parallel_jit_vmap_and_gradients():
  rng = np.random.default_rng(4)
  p = jnp.asarray(rng.uniform(0.05, 0.95, (3, 6)), jnp.float32)
  prev = jnp.asarray(rng.dirichlet(np.ones(6), 3), jnp.float32)
  parallel = weighting.monotonic_weights(p, prev, 'parallel')
  recursive = weighting.monotonic_weights(p, prev, 'recursive')
  np.testing.assert_allclose(parallel, recursive, atol=1e-5)
  vmapped = jax.vmap(lambda a, b: weighting.monotonic_weights(a, b, 'recursive'))(p, prev)
  np.testing.assert_allclose(vmapped, recursive, atol=1e-6)
  np.testing.assert_allclose(jax.jit(weighting.monotonic_weights, static_argnums=2)(p, prev, 'parallel'), parallel,
                             atol=1e-6)
  for mode in ('parallel', 'recursive'):
    check_grads(lambda a: weighting.monotonic_weights(a, prev, mode), (p,), order=1, modes=('rev',), atol=1e-2,
                rtol=1e-2)
  # p = 1 everywhere: the safe cumprod keeps the parallel form finite, and it attends where the last step did.
  hard = weighting.monotonic_weights(jnp.ones(5), jnp.eye(5)[2], 'parallel')
  assert np.all(np.isfinite(hard))
  np.testing.assert_allclose(hard, np.eye(5)[2], atol=1e-5)
  with pytest.raises(ValueError, match='Valid modes: parallel, recursive'):
    weighting.monotonic_weights(p, prev, 'hard')


def np_hard_monotonic(p, prev, threshold=0.5):
  """Raffel et al. 2017 test time: from the previously attended position, the first i with p_i > threshold."""
  out = np.zeros(len(p))
  if not prev.any():
    return out
  for i in range(int(np.argmax(prev)), len(p)):
    if p[i] > threshold:
      out[i] = 1.0
      break
  return out


def test_hard_monotonic_weights_match_the_test_time_rule():
  rng = np.random.default_rng(5)
  p = rng.random((6, 7))
  prev = np.zeros((6, 7))
  prev[np.arange(6), [0, 2, 4, 6, 1, 3]] = 1.0
  prev[5] = 0.0                                         # the end was passed earlier: stays at zero
  got = weighting.hard_monotonic_weights(jnp.asarray(p, jnp.float32), jnp.asarray(prev, jnp.float32))
  want = np.stack([np_hard_monotonic(p[i], prev[i]) for i in range(6)])
  np.testing.assert_array_equal(got, want)
  first = weighting.first_position(jnp.ones((2, 4), bool))
  np.testing.assert_array_equal(first, [[1, 0, 0, 0], [1, 0, 0, 0]])
  # No position past the previous one qualifies: zero weights (a zero context).
  none = weighting.hard_monotonic_weights(jnp.array([0.9, 0.1, 0.2]), jnp.array([0.0, 1.0, 0.0]))
  np.testing.assert_array_equal(none, [0.0, 0.0, 0.0])


def test_monotonic_is_a_decoder_weighting_only():
  with pytest.raises(ValueError, match="'monotonic' depends on the previous step's weights"):
    weighting.get('monotonic')


def test_recursive_monotonic_gradients_stay_finite_when_p_saturates():
  """With p near 1 the parallel form divides by cumulative products at the log-space floor and its gradient
  overflows float32; the recursion (what the decoders use) keeps every quantity in [0, 1]."""
  prev = jnp.zeros(12).at[0].set(1.0)
  loss = lambda e: jnp.sum(weighting.monotonic_weights(jax.nn.sigmoid(e), prev, 'recursive') * jnp.arange(12.0))
  grads = jax.grad(loss)(jnp.full((12,), 14.0))
  assert np.all(np.isfinite(grads))


def test_hard_monotonic_jit_vmap_and_bf16():
  rng = np.random.default_rng(6)
  p = jnp.asarray(rng.random((4, 3, 7)), jnp.float32)
  prev = jax.nn.one_hot(jnp.asarray(rng.integers(0, 7, (4, 3))), 7)
  want = weighting.hard_monotonic_weights(p, prev)
  np.testing.assert_array_equal(jax.jit(weighting.hard_monotonic_weights)(p, prev), want)
  np.testing.assert_array_equal(jax.vmap(weighting.hard_monotonic_weights)(p, prev), want)
  looped = np.stack([[np_hard_monotonic(np.asarray(p[i, j]), np.asarray(prev[i, j])) for j in range(3)]
                     for i in range(4)])
  np.testing.assert_array_equal(want, looped)
  bf16 = weighting.hard_monotonic_weights(p.astype(jnp.bfloat16), prev)
  assert bf16.dtype == jnp.float32 and np.all(np.asarray(bf16).sum(-1) <= 1)
