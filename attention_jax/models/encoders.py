"""Source encoders: (bidirectional) GRU/LSTM stacks and a small Transformer encoder.

Every encoder maps embedded tokens to hidden states and a summary vector for initialising a decoder:

    outputs [B, S, D_enc], summary [B, D_sum] = encoder(embedded [B, S, E], mask [B, S], train=...)

Padding is handled with `mask` (True = real token, left-aligned): the RNNs leave their state alone at padded
positions, so the final states are those of the last real token (forward) and the first token (backward).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attention_jax.models.recurrence import FLAX_CELL_NAMES
from attention_jax.models.recurrence import FusedCell
from attention_jax.models.recurrence import cell_output
from attention_jax.models.recurrence import run_layer
from attention_jax.modules import MultiHeadAttention

Array = jax.Array


class RNNEncoder(nn.Module):
  """A stack of GRU/LSTM layers, each optionally bidirectional (outputs concatenated).

  Each layer is `recurrence.run_layer`: the input projection for all positions in one matmul, then a scan of
  the recurrence with a batched weight gradient. The cells' parameters keep the names Flax's `nn.RNN` gave
  them (`GRUCell_k` / `OptimizedLSTMCell_k`, k counting forward_0, backward_0, forward_1, ...), so checkpoints
  written before the fused layers load unchanged.

  Attributes:
    cell_type: 'gru' or 'lstm'.
    hidden_dim: H per direction.
    num_layers: stacked layers.
    bidirectional: if True D_enc = 2H, else H.
    dropout_rate: dropout between layers.
    dtype: computation dtype (parameters stay float32).
  """
  cell_type: str = 'gru'
  hidden_dim: int = 128
  num_layers: int = 1
  bidirectional: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, embedded: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
    """embedded [B, S, E], mask [B, S] -> (outputs [B, S, D_enc], summary [B, D_enc])."""
    directions = 2 if self.bidirectional else 1
    x = embedded
    summary = None
    for layer in range(self.num_layers):
      if layer:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      outputs, finals = [], []
      for direction in range(directions):
        cell = FusedCell(self.cell_type, self.hidden_dim, dtype=self.dtype,
                         name=f'{FLAX_CELL_NAMES[self.cell_type]}_{directions * layer + direction}')
        out, final = run_layer(cell, x, mask, reverse=direction == 1)
        outputs.append(out)
        finals.append(cell_output(final))
      x = jnp.concatenate(outputs, axis=-1) if directions == 2 else outputs[0]
      summary = jnp.concatenate(finals, axis=-1) if directions == 2 else finals[0]
    # Padded positions carry states of no token; zero them so they are inert as keys and values.
    return jnp.where(mask[..., None], x, 0.0), summary


def sinusoidal_positions(length: int, dim: int) -> Array:
  """The Transformer's fixed sine/cosine position encodings, [length, dim]."""
  position = jnp.arange(length, dtype=jnp.float32)[:, None]
  rate = jnp.exp(-math.log(10000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  table = jnp.zeros((length, dim), jnp.float32)
  table = table.at[:, 0::2].set(jnp.sin(position * rate))
  return table.at[:, 1::2].set(jnp.cos(position * rate[: dim // 2]))


class TransformerEncoderLayer(nn.Module):
  """Pre-LayerNorm self-attention + MLP block."""
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  scorer: str = 'scaled_dot'
  dtype: Any = jnp.float32
  attention_implementation: str = 'vmap'     # see MultiHeadAttention.implementation

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool) -> Array:
    """x [B, S, D], mask [B, S] -> [B, S, D]."""
    h = nn.LayerNorm(dtype=self.dtype)(x)
    h, _ = MultiHeadAttention(num_heads=self.num_heads, scorer=self.scorer, dtype=self.dtype,
                              implementation=self.attention_implementation)(h, h, mask)
    x = x + nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = nn.LayerNorm(dtype=self.dtype)(x)
    h = nn.Dense(x.shape[-1], dtype=self.dtype)(nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype)(h)))
    return x + nn.Dropout(self.dropout_rate, deterministic=not train)(h)


class TransformerEncoder(nn.Module):
  """A small Transformer encoder (sinusoidal positions, pre-LN blocks); summary = masked mean of outputs.

  Attributes:
    hidden_dim: model width D (the embeddings are projected to it).
    num_layers, num_heads, mlp_dim, dropout_rate: the usual.
    attention_implementation: 'vmap' | 'xla' | 'cudnn' (see MultiHeadAttention.implementation).
  """
  hidden_dim: int = 128
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_implementation: str = 'vmap'

  @nn.compact
  def __call__(self, embedded: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
    """embedded [B, S, E], mask [B, S] -> (outputs [B, S, D], summary [B, D])."""
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, name='input_projection')(embedded) * math.sqrt(self.hidden_dim)
    x = x + sinusoidal_positions(x.shape[1], self.hidden_dim).astype(x.dtype)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    for layer in range(self.num_layers):
      x = TransformerEncoderLayer(self.num_heads, self.mlp_dim, self.dropout_rate, dtype=self.dtype,
                                  attention_implementation=self.attention_implementation, name=f'layer_{layer}')(
          x, mask, train=train)
    x = jnp.where(mask[..., None], nn.LayerNorm(dtype=self.dtype, name='final_norm')(x), 0.0)
    count = jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1)
    return x, (jnp.sum(x, axis=1) / count).astype(x.dtype)


ENCODERS = ('gru', 'lstm', 'bigru', 'bilstm', 'transformer')


def make_encoder(name: str, *, hidden_dim: int, num_layers: int, num_heads: int, mlp_dim: int,
                 dropout_rate: float, dtype: Any = jnp.float32, attention_implementation: str = 'vmap') -> nn.Module:
  """An encoder by config name ('gru' | 'lstm' | 'bigru' | 'bilstm' | 'transformer')."""
  if name == 'transformer':
    return TransformerEncoder(hidden_dim=hidden_dim, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim,
                              dropout_rate=dropout_rate, dtype=dtype, attention_implementation=attention_implementation)
  if name not in ENCODERS:
    raise ValueError(f'Unknown encoder {name!r}. Valid encoders: {", ".join(ENCODERS)}.')
  return RNNEncoder(cell_type=name.removeprefix('bi'), hidden_dim=hidden_dim, num_layers=num_layers,
                    bidirectional=name.startswith('bi'), dropout_rate=dropout_rate, dtype=dtype)
