"""Hard and soft glimpses: attention over an image as a place to look (pure functions, no Flax).

    patches = glimpse_sensor(images, locations, size=12, scales=3)        # Mnih et al. 2014: [B, k, g, g, C]
    patches = soft_glimpse(images, locations, log_stride, log_sigma, log_gamma, size=12, scales=3)   # DRAW-style
    surrogate = reinforce_surrogate(log_probs, rewards, baselines)          # its gradient is REINFORCE's

Locations are (y, x) in [-1, 1]: (-1, -1) is the image's top-left corner, (1, 1) its bottom-right, (0, 0) its
centre. In pixel units, pixel (r, c) covers [r, r + 1) x [c, c + 1), so its centre is (r + 0.5, c + 0.5) and a
location l maps to the point (l + 1) / 2 * (H, W).

Hard glimpse (Mnih et al. 2014, "Recurrent Models of Visual Attention"): k square patches centred on the location,
of sides g, 2g, ..., 2^(k-1) g, each average-pooled down to g x g; pixels outside the image read as 0. The patch
is cut at whole pixels (not differentiable in the location; the location is learned by REINFORCE).

Soft glimpse (Gregor et al. 2015, DRAW's read): for each scale, an N x N grid of Gaussian filters centred on the
location with stride delta and standard deviation sigma, F_Y [N, H] and F_X [N, W] (rows normalised to sum 1),
read as gamma * F_Y A F_X^T per channel: differentiable in the location, stride, sigma and intensity, so it trains
by backpropagation. With sigma -> 0 and a whole-pixel centre inside the image, scale 0 (delta = 1) reads exactly the
hard glimpse's finest patch and scale 1 (delta = 2, each filter midway between two pixels) its pooled second patch;
from scale 2 on each filter reads the 2 x 2 pixels at the centre of its 2^i x 2^i block, where the hard glimpse
averages the whole block. Each filter is normalised over the image's pixels, so a filter centred off the image reads the
nearest edge pixels where the hard glimpse reads zeros.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def location_to_pixels(locations: Array, height: int, width: int) -> Array:
  """(y, x) in [-1, 1] [..., 2] -> the point in pixel units [..., 2] ((0, 0) is the top-left corner)."""
  scale = jnp.asarray([height, width], jnp.float32)
  return (jnp.asarray(locations, jnp.float32) + 1.0) * 0.5 * scale


def patch_sides(size: int, scales: int) -> tuple[int, ...]:
  """The sides of the k patches of a glimpse: g, 2g, ..., 2^(k-1) g."""
  return tuple(size * 2 ** i for i in range(scales))


def glimpse_sensor(images: Array, locations: Array, *, size: int, scales: int) -> Array:
  """Mnih et al.'s retina: k patches of growing side around each location, each pooled to size x size.

  Args:
    images: [B, H, W, C].
    locations: [B, 2] (y, x) in [-1, 1]; values outside are clipped.
    size: g, the side of every returned patch.
    scales: k >= 1.

  Returns:
    [B, k, g, g, C]: patch i covers the 2^i g x 2^i g pixels whose top-left pixel is
    round(centre - 2^i g / 2), averaged over 2^i x 2^i blocks; pixels outside the image count as 0.
  """
  batch, height, width, channels = images.shape
  sides = patch_sides(size, scales)
  pad = sides[-1] // 2 + 1
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  centres = location_to_pixels(jnp.clip(locations, -1.0, 1.0), height, width)        # [B, 2]
  patches = []
  for side in sides:
    top_left = jnp.round(centres - side / 2).astype(jnp.int32) + pad                   # [B, 2], in padded pixels

    def cut(image, corner, side=side):
      return jax.lax.dynamic_slice(image, (corner[0], corner[1], 0), (side, side, channels))

    patch = jax.vmap(cut)(padded, top_left)                                            # [B, side, side, C]
    factor = side // size
    patch = patch.reshape(batch, size, factor, size, factor, channels).mean(axis=(2, 4))
    patches.append(patch)
  return jnp.stack(patches, axis=1)


def gaussian_filterbank(centres: Array, stride: Array, sigma: Array, *, size: int, length: int) -> Array:
  """DRAW's filters along one axis: [B, N, L], row i a Gaussian at centre + (i - N/2 + 0.5) * stride, normalised.

  Args:
    centres: [B] in pixel units. stride, sigma: [B] positive, in pixels.
    size: N filters. length: L pixels along the axis (pixel a's centre at a + 0.5).
  """
  offsets = jnp.arange(size, dtype=jnp.float32) - size / 2 + 0.5
  means = centres[:, None] + offsets[None, :] * stride[:, None]                          # [B, N]
  pixels = jnp.arange(length, dtype=jnp.float32) + 0.5                                  # [L]
  log_weights = -jnp.square(pixels[None, None, :] - means[:, :, None]) / (2 * jnp.square(sigma)[:, None, None])
  # Normalise in log space: with a small sigma every exp() underflows to 0 and a plain sum would divide 0 by 0.
  return jax.nn.softmax(log_weights, axis=-1)


def soft_glimpse(images: Array, locations: Array, log_stride: Array, log_sigma: Array, log_gamma: Array, *,
                 size: int, scales: int) -> Array:
  """DRAW's read at k scales: [B, k, N, N, C] with N = size.

  Args:
    images: [B, H, W, C].
    locations: [B, 2] (y, x) in [-1, 1] (not clipped: the filters may sit partly off the image).
    log_stride: [B], the log of the stride multiplier: scale i's stride is 2^i * exp(log_stride) pixels, so at 0
      the k grids span g, 2g, ... pixels as the hard glimpse's patches.
    log_sigma: [B], the log of the filters' standard deviation in units of the scale's stride.
    log_gamma: [B], the log of the read's intensity.
  """
  _, height, width, _ = images.shape
  centres = location_to_pixels(locations, height, width)
  reads = []
  for i in range(scales):
    stride = (2.0 ** i) * jnp.exp(log_stride)
    sigma = stride * jnp.exp(log_sigma)
    filter_y = gaussian_filterbank(centres[:, 0], stride, sigma, size=size, length=height)   # [B, N, H]
    filter_x = gaussian_filterbank(centres[:, 1], stride, sigma, size=size, length=width)    # [B, N, W]
    read = jnp.einsum('bnh,bhwc,bmw->bnmc', filter_y, images, filter_x)
    reads.append(read * jnp.exp(log_gamma)[:, None, None, None])
  return jnp.stack(reads, axis=1)


def gaussian_log_prob(samples: Array, means: Array, std: float) -> Array:
  """log N(samples; means, std^2 I), summed over the last axis: [..., D] -> [...]."""
  z = (samples - means) / std
  dims = samples.shape[-1]
  return -0.5 * jnp.sum(jnp.square(z), axis=-1) - dims * (math.log(std) + 0.5 * math.log(2 * math.pi))


def reinforce_surrogate(log_probs: Array, rewards: Array, baselines: Array) -> Array:
  """Williams' REINFORCE as a loss: -sum_t (R - b_t) log pi(l_t), the advantage held constant.

  Its gradient with respect to the policy's parameters is the REINFORCE estimate of -dE[R]/dtheta with the
  baseline b_t subtracted (Mnih et al. 2014, eq. 2). Train the baseline separately (e.g. by (b_t - R)^2).

  Args:
    log_probs: [B, T] log pi(l_t | s_1:t) of the sampled actions.
    rewards: [B] the episode's return R (e.g. 1 for a right classification).
    baselines: [B, T] b_t.

  Returns:
    [B] the surrogate loss per episode.
  """
  advantages = jax.lax.stop_gradient(rewards[:, None] - baselines)
  return -jnp.sum(advantages * log_probs, axis=-1)
