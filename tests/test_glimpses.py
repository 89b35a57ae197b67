"""Hard and soft glimpses and the REINFORCE surrogate against numpy written from the papers' definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import glimpses


def numpy_glimpse(image, location, size, scales):
  """Mnih et al.'s retina by hand: [k, g, g, C] for one image [H, W, C] and one (y, x) location."""
  height, width, channels = image.shape
  centre = (np.clip(location, -1, 1) + 1) / 2 * np.array([height, width])
  out = []
  for i in range(scales):
    side = size * 2 ** i
    top, left = (int(v) for v in np.round(centre - side / 2))
    patch = np.zeros((side, side, channels), np.float32)
    for r in range(side):
      for c in range(side):
        y, x = top + r, left + c
        if 0 <= y < height and 0 <= x < width:
          patch[r, c] = image[y, x]
    factor = 2 ** i
    out.append(patch.reshape(size, factor, size, factor, channels).mean(axis=(1, 3)))
  return np.stack(out)


def test_glimpse_sensor_matches_hand_cut_patches():
  rng = np.random.default_rng(0)
  images = rng.random((4, 20, 24, 2)).astype(np.float32)
  # centre, a corner (most of the large patches off the image), an off-centre point, and one clipped from 1.7
  locations = np.array([[0.0, 0.0], [-1.0, 1.0], [0.3, -0.55], [1.7, 0.1]], np.float32)
  got = np.asarray(glimpses.glimpse_sensor(jnp.asarray(images), jnp.asarray(locations), size=4, scales=3))
  assert got.shape == (4, 3, 4, 4, 2)
  for b in range(4):
    np.testing.assert_allclose(got[b], numpy_glimpse(images[b], locations[b], 4, 3), rtol=1e-6, atol=1e-6)
  # The finest patch at the centre of a 20x24 image is pixels 8..11 x 10..13, no pooling.
  np.testing.assert_array_equal(got[0, 0], images[0, 8:12, 10:14])


def test_glimpse_sensor_jit_and_per_example():
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.random((3, 16, 16, 1)), jnp.float32)
  locations = jnp.asarray(rng.uniform(-1, 1, (3, 2)), jnp.float32)
  sense = lambda x, l: glimpses.glimpse_sensor(x, l, size=4, scales=2)
  batched = sense(images, locations)
  # (the pooling's sums may be ordered differently when fused: equal to rounding)
  np.testing.assert_allclose(np.asarray(jax.jit(sense)(images, locations)), np.asarray(batched), rtol=1e-6, atol=1e-7)
  for b in range(3):
    np.testing.assert_allclose(np.asarray(sense(images[b:b + 1], locations[b:b + 1]))[0], np.asarray(batched[b]),
                               rtol=1e-6, atol=1e-7)


def numpy_filterbank(centre, stride, sigma, size, length):
  """DRAW eq. 19-22 with pixel a at a + 0.5: F[i, a] = exp(-(a + 0.5 - mu_i)^2 / (2 sigma^2)) / Z_i."""
  mu = centre + (np.arange(size) - size / 2 + 0.5) * stride
  weights = np.exp(-((np.arange(length) + 0.5)[None, :] - mu[:, None]) ** 2 / (2 * sigma ** 2))
  return weights / weights.sum(axis=1, keepdims=True)


def test_gaussian_filterbank_matches_draw_equations():
  got = glimpses.gaussian_filterbank(jnp.asarray([7.3, 12.0]), jnp.asarray([1.5, 2.0]), jnp.asarray([0.8, 1.7]),
                                     size=5, length=20)
  for b, (c, d, s) in enumerate([(7.3, 1.5, 0.8), (12.0, 2.0, 1.7)]):
    np.testing.assert_allclose(np.asarray(got[b]), numpy_filterbank(c, d, s, 5, 20), rtol=1e-5, atol=1e-7)


def test_soft_glimpse_with_narrow_filters_reads_the_hard_patch():
  rng = np.random.default_rng(2)
  images = rng.random((2, 24, 24, 1)).astype(np.float32)
  locations = np.array([[0.0, 0.0], [-0.25, 0.5]], np.float32)      # centres (12, 12) and (9, 18): whole pixels
  zeros = jnp.zeros((2,))
  soft = glimpses.soft_glimpse(jnp.asarray(images), jnp.asarray(locations), zeros, jnp.full((2,), math.log(0.01)),
                               zeros, size=6, scales=1)
  hard = glimpses.glimpse_sensor(jnp.asarray(images), jnp.asarray(locations), size=6, scales=1)
  np.testing.assert_allclose(np.asarray(soft), np.asarray(hard), atol=1e-5)
  # Intensity gamma scales the read; with wide filters the read is gamma * F_Y A F_X^T.
  log_sigma, log_gamma = jnp.full((2,), math.log(0.7)), jnp.full((2,), math.log(2.0))
  read = np.asarray(glimpses.soft_glimpse(jnp.asarray(images), jnp.asarray(locations), zeros, log_sigma, log_gamma,
                                          size=6, scales=2))
  for b, (cy, cx) in enumerate([(12.0, 12.0), (9.0, 18.0)]):
    for i in range(2):
      stride = 2.0 ** i
      fy, fx = (numpy_filterbank(c, stride, 0.7 * stride, 6, 24) for c in (cy, cx))
      np.testing.assert_allclose(read[b, i, :, :, 0], 2.0 * fy @ images[b, :, :, 0] @ fx.T, rtol=1e-4, atol=1e-6)


def test_soft_glimpse_coarser_scales_sample_and_off_image_filters_read_the_edge():
  image = np.random.default_rng(5).random((1, 16, 16, 1)).astype(np.float32)
  narrow, zeros = jnp.full((1,), math.log(0.01)), jnp.zeros((1,))
  centre = jnp.asarray([[0.0, 0.0]])
  read = np.asarray(glimpses.soft_glimpse(jnp.asarray(image), centre, zeros, narrow, zeros, size=2, scales=3))
  hard = np.asarray(glimpses.glimpse_sensor(jnp.asarray(image), centre, size=2, scales=3))
  # Scales 0 and 1 equal the hard glimpse's (scale 1: means 8 + (i - 0.5) * 2 = 7, 9 lie midway between pixel
  # centres, so each reads the mean of a 2 x 2 block, as the pooled patch does).
  np.testing.assert_allclose(read[0, :2], hard[0, :2], atol=1e-3)
  # Scale 2 (stride 4): means 6 and 10 read the centre 2 x 2 (pixels 5-6, 9-10) of the 4 x 4 blocks 4-7, 8-11.
  want = np.array([[image[0, r:r + 2, c:c + 2, 0].mean() for c in (5, 9)] for r in (5, 9)])
  np.testing.assert_allclose(read[0, 2, :, :, 0], want, atol=1e-3)
  assert not np.allclose(read[0, 2], hard[0, 2], atol=1e-3)              # not the whole block's mean
  # A grid centred on the top-left corner: the filters off the image read the first row / column.
  corner = np.asarray(glimpses.soft_glimpse(jnp.asarray(image), jnp.asarray([[-1.0, -1.0]]), zeros, narrow, zeros,
                                            size=4, scales=1))
  np.testing.assert_allclose(corner[0, 0, :, :, 0], image[0][np.ix_([0, 0, 0, 1], [0, 0, 0, 1])][..., 0], atol=1e-3)


def test_soft_glimpse_is_differentiable_in_where_it_looks():
  images = jnp.asarray(np.random.default_rng(3).random((1, 16, 16, 1)), jnp.float32)

  def total(params):
    location, log_stride = params
    return jnp.sum(glimpses.soft_glimpse(images, location, log_stride, jnp.zeros(1), jnp.zeros(1), size=4, scales=2)
                   * jnp.arange(4.0)[None, None, :, None, None])
  location, log_stride = jnp.asarray([[0.1, -0.2]]), jnp.asarray([0.2])
  grads = jax.grad(total)((location, log_stride))
  eps = 1e-3
  for k in range(2):
    shift = jnp.zeros((1, 2)).at[0, k].set(eps)
    numeric = (total((location + shift, log_stride)) - total((location - shift, log_stride))) / (2 * eps)
    np.testing.assert_allclose(float(grads[0][0, k]), float(numeric), rtol=2e-2, atol=1e-3)
  assert float(jnp.abs(grads[1][0])) > 0


def test_gaussian_log_prob():
  x, mean = np.array([[0.3, -0.2], [1.0, 0.5]]), np.array([[0.1, 0.0], [0.9, 0.9]])
  std = 0.2
  want = np.sum(-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)
  np.testing.assert_allclose(np.asarray(glimpses.gaussian_log_prob(jnp.asarray(x), jnp.asarray(mean), std)), want,
                             rtol=1e-6)


@pytest.mark.parametrize('baseline', [0.0, -1.0])
def test_reinforce_gradient_matches_numpy_and_the_true_gradient(baseline):
  """A Gaussian policy l ~ N(theta, sigma^2) with reward R(l) = -(l - c)^2: E[R] = -((theta - c)^2 + sigma^2), so
  -dE[R]/dtheta = 2 (theta - c). The surrogate's gradient must equal numpy's REINFORCE estimate
  -mean((R - b) (l - theta) / sigma^2) on the same samples, and approach 2 (theta - c)."""
  theta, sigma, c, n = 0.4, 0.3, -0.1, 200_000
  noise = np.random.default_rng(4).standard_normal(n)
  samples = theta + sigma * noise
  rewards = -(samples - c) ** 2

  def surrogate(theta):
    log_probs = glimpses.gaussian_log_prob(jnp.asarray(samples)[:, None, None], theta, sigma)    # [n, 1]
    return jnp.mean(glimpses.reinforce_surrogate(log_probs, jnp.asarray(rewards), jnp.full((n, 1), baseline)))

  got = float(jax.jit(jax.grad(surrogate))(jnp.float32(theta)))
  numpy_estimate = -np.mean((rewards - baseline) * (samples - theta) / sigma ** 2)
  np.testing.assert_allclose(got, numpy_estimate, rtol=1e-3)
  standard_error = np.std((rewards - baseline) * (samples - theta) / sigma ** 2) / np.sqrt(n)
  assert abs(got - 2 * (theta - c)) < 4 * standard_error
  # The baseline and the rewards carry no gradient of their own.
  grads = jax.grad(lambda r, b: jnp.sum(glimpses.reinforce_surrogate(jnp.ones((2, 1)), r, b)), argnums=(0, 1))(
      jnp.ones(2), jnp.zeros((2, 1)))
  assert not np.any(np.asarray(grads[0])) and not np.any(np.asarray(grads[1]))
