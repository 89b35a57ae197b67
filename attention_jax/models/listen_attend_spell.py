"""Attention-based speech recognition: a pyramidal BiLSTM listener (Chan et al. 2016, "Listen, Attend and Spell")
and the translation decoders as the speller, with content (additive) or location-aware attention (Chorowski et al.
2015).

    frames [B, F, M + 1]: M log-mel values per frame and a last channel that is 1 on real frames, 0 on padding
    x_i = [frame_(ki) ; ... ; frame_(ki+k-1)]                    [B, F / k, k M]   k = frame_stacking
    h^0 = BiLSTM(x)                                              [B, F / k, 2H]
    h^j_i = BiLSTM([h^(j-1)_2i ; h^(j-1)_(2i+1)])  j = 1..P      [B, F / (k 2^P), 2H]  (each layer halves time)
    logits [B, T, V], weights [B, T, F / (k 2^P)] = model.apply(variables, frames, target_in [B, T], train=False)

Teacher forcing and step-by-step decoding (`attention_jax.decoding`) are those of every encoder-attention-decoder
model (attention_decoder.py); only `encode` is new. F must be a multiple of k 2^P (`time_reduction`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax.models.attention_decoder import AttentionDecoderModel
from attention_jax.models.decoders import DECODERS
from attention_jax.models.decoders import Memory
from attention_jax.models.encoders import RNNEncoder

Array = jax.Array


def time_reduction(frame_stacking: int, pyramid_layers: int) -> int:
  """Frames per listener state: k 2^P."""
  return int(frame_stacking) * 2 ** int(pyramid_layers)


def halve_time(states: Array, mask: Array) -> tuple[Array, Array]:
  """[B, F, D], [B, F] -> [B, F / 2, 2D] (consecutive frames side by side, padding zeroed), [B, F / 2] (a pair is
  real if its first frame is)."""
  batch, frames, dim = states.shape
  states = jnp.where(mask[..., None], states, 0.0)
  return states.reshape(batch, frames // 2, 2 * dim), mask[:, ::2]


class Listener(nn.Module):
  """The pyramidal BiLSTM: frames stacked `frame_stacking` at a time, one BiLSTM on them, then `pyramid_layers`
  BiLSTMs each over pairs of states."""
  hidden_dim: int = 128
  pyramid_layers: int = 2
  frame_stacking: int = 2
  dropout_rate: float = 0.0

  @property
  def time_reduction(self) -> int:
    return time_reduction(self.frame_stacking, self.pyramid_layers)

  @nn.compact
  def __call__(self, features: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
    """features [B, F, M], mask [B, F] -> (states [B, F / R, 2H], mask [B, F / R]), R = time_reduction."""
    if features.shape[1] % self.time_reduction:
      raise ValueError(f'{features.shape[1]} frames is not a multiple of the time reduction {self.time_reduction} '
                       f'(frame_stacking {self.frame_stacking} x 2^{self.pyramid_layers}): pad the frames to a '
                       f'multiple of {self.time_reduction}.')
    batch, frames, dim = features.shape
    features = jnp.where(mask[..., None], features, 0.0)        # a stack mixing real and padding frames sees zeros
    features = features.reshape(batch, frames // self.frame_stacking, self.frame_stacking * dim)
    mask = mask[:, ::self.frame_stacking]
    states, _ = RNNEncoder(cell_type='lstm', hidden_dim=self.hidden_dim, name='layer_0')(features, mask, train=train)
    for j in range(1, self.pyramid_layers + 1):
      states, mask = halve_time(states, mask)
      states = nn.Dropout(self.dropout_rate, deterministic=not train)(states)
      states, _ = RNNEncoder(cell_type='lstm', hidden_dim=self.hidden_dim, name=f'layer_{j}')(states, mask,
                                                                                             train=train)
    return states, mask


class ListenAttendSpell(AttentionDecoderModel):
  """Pyramidal BiLSTM listener + an attention decoder of attention_jax.models.decoders emitting characters.

  Attributes:
    vocab_size: V of the output characters (0 = PAD, 1 = BOS, 2 = EOS).
    decoder: 'bahdanau' (attend from the previous state, as Chorowski et al.) | 'luong' | 'none'.
    scorer, scorer_options, weighting: the attention over the listener's states ('additive': content only;
      'location_aware': content plus convolutional features of the previous weights).
    listener_dim, pyramid_layers, frame_stacking: H per direction, P, k.
    embed_dim, hidden_dim, decoder_cell, dropout_rate: the speller.
  """
  vocab_size: int
  decoder: str = 'bahdanau'
  scorer: str = 'location_aware'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  listener_dim: int = 128
  pyramid_layers: int = 2
  frame_stacking: int = 2
  embed_dim: int = 32
  hidden_dim: int = 256
  decoder_cell: str = 'lstm'
  dropout_rate: float = 0.0

  def setup(self):
    if self.decoder not in DECODERS:
      raise ValueError(f'Unknown decoder {self.decoder!r}. Valid decoders: {", ".join(DECODERS)}.')
    self.listener = Listener(self.listener_dim, self.pyramid_layers, self.frame_stacking, self.dropout_rate)
    self.target_embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.cell = DECODERS[self.decoder](vocab_size=self.vocab_size, hidden_dim=self.hidden_dim,
                                       cell_type=self.decoder_cell, scorer=self.scorer, weighting=self.weighting,
                                       scorer_options=self.scorer_options, dropout_rate=self.dropout_rate)
    self.dropout = nn.Dropout(self.dropout_rate)

  def encode(self, frames: Array, *, train: bool = False) -> Memory:
    """frames [B, F, M + 1] (last channel: 1 = real frame) -> Memory over the F / (k 2^P) listener states
    (summary: their mean over real positions)."""
    mask = frames[..., -1] > 0.5
    states, mask = self.listener(frames[..., :-1], mask, train=train)
    real = mask[..., None].astype(states.dtype)
    summary = jnp.sum(states * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1.0)
    return self.cell.prepare_memory(states, mask, summary)
