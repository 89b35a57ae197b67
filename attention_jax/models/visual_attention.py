"""Classifying an image by where a recurrent network chooses to look, and the CNN it is compared with.

RecurrentAttentionModel (Mnih et al. 2014, RAM), for n = num_glimpses:

    l_1 = (0, 0)                                       the first glimpse looks at the centre
    x_t = glimpse(image, l_t)                          [B, k, g, g, C]  hard (glimpses.glimpse_sensor) or soft
    g_t = relu(W_g relu(W_x x_t) + W_l relu(W_h l_t))  glimpse network, [B, G]
    h_t = GRU(h_{t-1}, g_t)                            core, [B, H]
    mu_{t+1} = tanh(W_mu h_t)                          location network, [B, 2]
    l_{t+1} ~ N(mu_{t+1}, sigma^2 I)  (training)       the mean at evaluation; clipped to [-1, 1] to look
    b_{t+1} = W_b h_t                                  baseline of the reward, [B]
    logits = W_c h_n                                   [B, classes]

glimpse='hard': the location is sampled and the patch cut at whole pixels; the location network and the baseline
see h_t through stop_gradient, so they learn only from REINFORCE and from (b_t - R)^2 (the task's loss), the rest
by the classification gradient. glimpse='soft': DRAW-style Gaussian reads (glimpses.soft_glimpse); the network
emits the location, the stride, the filters' width and the intensity deterministically and everything trains by
backpropagation (no sampling, no baseline).

ConvClassifier: the CNN baseline: strided convolutions, a hidden layer, the classes.

    model = RecurrentAttentionModel(num_classes=10, num_glimpses=6)
    out = model.apply(variables, images [B, H, W, C], train=True, rngs={'location': key})
    out['logits'] [B, classes], out['locations'] [B, n, 2] (y, x) in [-1, 1],
    out['log_probs'] [B, n - 1], out['baselines'] [B, n - 1], out['policy_means'] [B, n - 1, 2]   (hard glimpses)
    out['strides'] [B, n] the finest scale's stride in pixels (1 for hard glimpses)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from attention_jax import glimpses
from attention_jax.models.recurrence import FusedCell

Array = jax.Array
GLIMPSES = ('hard', 'soft')


class GlimpseNetwork(nn.Module):
  """g_t = relu(W_g relu(W_x x) + W_l relu(W_h l)): the what and the where of a glimpse, [B, G]."""
  what_dim: int
  where_dim: int
  features: int

  @nn.compact
  def __call__(self, patches: Array, locations: Array) -> Array:
    what = nn.relu(nn.Dense(self.what_dim, name='what')(patches.reshape(patches.shape[0], -1)))
    where = nn.relu(nn.Dense(self.where_dim, name='where')(locations))
    return nn.relu(nn.Dense(self.features, name='what_out')(what) + nn.Dense(self.features, name='where_out')(where))


class RecurrentAttentionModel(nn.Module):
  """RAM (hard glimpses, REINFORCE) or its differentiable variant (soft glimpses); see the module docstring.

  Attributes:
    num_classes: C.
    num_glimpses: n >= 1.
    glimpse: 'hard' | 'soft'.
    glimpse_size: g, the side of every patch the network sees.
    glimpse_scales: k, patches of sides g, 2g, ..., 2^(k-1) g.
    what_dim, where_dim: the glimpse network's two hidden sizes.
    glimpse_dim: G.
    hidden_dim: H, the GRU core.
    location_std: sigma of the location policy (hard), in the [-1, 1] units of a location.
  """
  num_classes: int
  num_glimpses: int = 6
  glimpse: str = 'hard'
  glimpse_size: int = 12
  glimpse_scales: int = 3
  what_dim: int = 128
  where_dim: int = 128
  glimpse_dim: int = 256
  hidden_dim: int = 256
  location_std: float = 0.15

  @nn.compact
  def __call__(self, images: Array, train: bool = False) -> dict[str, Array]:
    if self.glimpse not in GLIMPSES:
      raise ValueError(f'Unknown glimpse {self.glimpse!r}. Valid glimpses: {", ".join(GLIMPSES)}.')
    if self.num_glimpses < 1:
      raise ValueError(f'num_glimpses={self.num_glimpses} must be >= 1.')
    batch = images.shape[0]
    glimpse_net = GlimpseNetwork(self.what_dim, self.where_dim, self.glimpse_dim, name='glimpse_network')
    core = FusedCell('gru', self.hidden_dim, name='core')
    # The soft read's 5 numbers start at the hard glimpse's geometry: centre, stride 1, sigma = stride / 2, gamma 1.
    where_next = nn.Dense(2 if self.glimpse == 'hard' else 5, name='location_network',
                          kernel_init=nn.initializers.normal(0.01), bias_init=nn.initializers.zeros)
    baseline_net = nn.Dense(1, name='baseline')
    hidden = jnp.zeros((batch, self.hidden_dim), jnp.float32)
    location = jnp.zeros((batch, 2), jnp.float32)
    read = jnp.zeros((batch, 3), jnp.float32)           # soft: log stride, log sigma (rel. to stride), log gamma
    read = read.at[:, 1].set(jnp.log(0.5))
    locations, log_probs, baselines, strides, means = [location], [], [], [], []
    for t in range(self.num_glimpses):
      if self.glimpse == 'hard':
        patches = glimpses.glimpse_sensor(images, location, size=self.glimpse_size, scales=self.glimpse_scales)
        strides.append(jnp.ones((batch,), jnp.float32))
      else:
        patches = glimpses.soft_glimpse(images, location, read[:, 0], read[:, 1], read[:, 2],
                                        size=self.glimpse_size, scales=self.glimpse_scales)
        strides.append(jnp.exp(read[:, 0]))
      hidden, _ = core(hidden, glimpse_net(patches, location))
      if t == self.num_glimpses - 1:
        break
      if self.glimpse == 'hard':
        state = jax.lax.stop_gradient(hidden)
        mean = jnp.tanh(where_next(state))
        if train:
          noise = jax.random.normal(self.make_rng('location'), mean.shape)
          action = jax.lax.stop_gradient(mean + self.location_std * noise)
        else:
          action = jax.lax.stop_gradient(mean)
        # The policy's log-density at the action it drew; the sensor looks at the action clipped to the canvas.
        # (The log-density at the clipped point would be biased: near an edge it always pulls the mean outward.)
        log_probs.append(glimpses.gaussian_log_prob(action, mean, self.location_std))
        means.append(mean)
        location = jnp.clip(action, -1.0, 1.0)
        baselines.append(baseline_net(state)[:, 0])
      else:
        out = where_next(hidden)
        location = jnp.tanh(out[:, :2])
        read = out[:, 2:] + jnp.asarray([0.0, jnp.log(0.5), 0.0])
      locations.append(location)
    logits = nn.Dense(self.num_classes, name='classifier')(hidden)
    out = {'logits': logits, 'locations': jnp.stack(locations, axis=1), 'strides': jnp.stack(strides, axis=1)}
    if self.glimpse == 'hard':
      empty = jnp.zeros((batch, 0), jnp.float32)          # one glimpse: no location was chosen
      out['log_probs'] = jnp.stack(log_probs, axis=1) if log_probs else empty
      out['baselines'] = jnp.stack(baselines, axis=1) if baselines else empty
      out['policy_means'] = jnp.stack(means, axis=1) if means else jnp.zeros((batch, 0, 2), jnp.float32)
    return out


class ConvClassifier(nn.Module):
  """The CNN baseline (Mnih et al. 2014's, widened to RAM's size): per (features, kernel, stride) of `layers` a VALID
  convolution and relu; then a relu hidden layer of `hidden_dim` and the classes. Returns {'logits': [B, C]} like
  RecurrentAttentionModel."""
  num_classes: int
  layers: Sequence[tuple[int, int, int]] = ((16, 10, 5),)
  hidden_dim: int = 256

  @nn.compact
  def __call__(self, images: Array, train: bool = False) -> dict[str, Array]:
    del train
    x = images
    for i, (features, kernel, stride) in enumerate(self.layers):
      x = nn.relu(nn.Conv(int(features), (int(kernel),) * 2, strides=int(stride), padding='VALID', name=f'conv{i}')(x))
    x = nn.relu(nn.Dense(self.hidden_dim, name='hidden')(x.reshape(x.shape[0], -1)))
    return {'logits': nn.Dense(self.num_classes, name='classifier')(x)}
