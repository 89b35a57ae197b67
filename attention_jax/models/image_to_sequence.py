"""Image to sequence with spatial soft attention (Xu et al. 2015, "Show, Attend and Tell").

A small CNN turns the image into a grid of feature vectors (the "annotation vectors"); the attention decoder
(the same decoder cells as translation) attends over the P = h * w grid cells at every output step:

    features [B, P, F] = CNN(images [B, H, W, C])
    logits [B, T, V], weights [B, T, P] = model.apply(variables, images, target_in [B, T], train=False)

`weights[b, t].reshape(grid_shape)` is where the model looked when emitting token t. Teacher forcing and
step-by-step decoding (`initial_state`, `decode_step`, used by `attention_jax.decoding`) are Seq2Seq's, from
their shared base `AttentionDecoderModel` (attention_decoder.py); only `encode` differs.

The doubly stochastic regulariser of Xu et al. (eq. 14) pushes every grid cell to receive a total attention
of about 1 over the output: lambda * sum_p (1 - sum_t a_tp)^2 (`doubly_stochastic_penalty`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax.models.attention_decoder import AttentionDecoderModel
from attention_jax.models.decoders import DECODERS
from attention_jax.models.decoders import Memory

Array = jax.Array


class ConvEncoder(nn.Module):
  """Conv(3x3) + ReLU blocks, each followed by 2x2 max-pooling where `pool` says so."""
  features: Sequence[int] = (32, 64)
  pool: Sequence[bool] = (True, False)

  @nn.compact
  def __call__(self, images: Array) -> Array:
    """images [B, H, W, C] -> feature grid [B, h, w, F]."""
    x = images
    for i, (features, pool) in enumerate(zip(self.features, self.pool)):
      x = nn.relu(nn.Conv(features, (3, 3), padding='SAME', name=f'conv_{i}')(x))
      if pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x


class ImageToSequence(AttentionDecoderModel):
  """CNN encoder + attention decoder emitting a token sequence.

  Attributes:
    vocab_size: V of the output tokens (0 = PAD, 1 = BOS, 2 = EOS).
    decoder: 'bahdanau' (attend from the previous state, as Xu et al.) | 'luong' | 'none'.
    scorer, scorer_options, weighting: the spatial attention.
    conv_features, conv_pool: the CNN (one entry per conv layer).
    embed_dim, hidden_dim, decoder_cell, dropout_rate: the decoder.
  """
  vocab_size: int
  decoder: str = 'bahdanau'
  scorer: str = 'additive'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  conv_features: Sequence[int] = (32, 64)
  conv_pool: Sequence[bool] = (True, False)
  embed_dim: int = 32
  hidden_dim: int = 128
  decoder_cell: str = 'lstm'
  dropout_rate: float = 0.0

  def setup(self):
    if self.decoder not in DECODERS:
      raise ValueError(f'Unknown decoder {self.decoder!r}. Valid decoders: {", ".join(DECODERS)}.')
    if len(self.conv_features) != len(self.conv_pool):
      raise ValueError(f'conv_features {tuple(self.conv_features)} and conv_pool {tuple(self.conv_pool)} need one '
                       'entry per conv layer each.')
    self.cnn = ConvEncoder(tuple(self.conv_features), tuple(self.conv_pool))
    self.target_embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.cell = DECODERS[self.decoder](vocab_size=self.vocab_size, hidden_dim=self.hidden_dim,
                                       cell_type=self.decoder_cell, scorer=self.scorer, weighting=self.weighting,
                                       scorer_options=self.scorer_options, dropout_rate=self.dropout_rate)
    self.dropout = nn.Dropout(self.dropout_rate)

  def encode(self, images: Array, *, train: bool = False) -> Memory:
    """images [B, H, W, C] -> Memory over the P grid cells (all attendable; summary = mean feature)."""
    del train
    grid = self.cnn(images)
    features = grid.reshape(grid.shape[0], -1, grid.shape[-1])
    mask = jnp.ones(features.shape[:2], bool)
    return self.cell.prepare_memory(features, mask, jnp.mean(features, axis=1))


def grid_shape(model: ImageToSequence, image_height: int, image_width: int) -> tuple[int, int]:
  """(h, w) of the attention grid for images of the given size (each pooled layer halves both)."""
  h, w = image_height, image_width
  for pool in model.conv_pool:
    if pool:
      h, w = h // 2, w // 2
  return h, w


def doubly_stochastic_penalty(weights: Array, target_mask: Array) -> Array:
  """sum_p (1 - sum_t a_tp)^2 per example (Xu et al. 2015, eq. 14; multiply by lambda in the loss).

  Args:
    weights: [B, T, P] attention weights.
    target_mask: [B, T] bool, True at real output positions (padding steps do not count).

  Returns:
    [B] float32.
  """
  total = jnp.sum(jnp.where(target_mask[..., None], weights, 0.0), axis=1)   # [B, P]
  return jnp.sum((1.0 - total) ** 2, axis=-1)
