"""Candidate fast paths measured by the benchmarks (prototypes; the library does not use them).

`einsum_multi_head_attend` is what a dot-product fast path in `attention.multi_head_attend` would look like:
one einsum over the whole batch and all heads instead of `jax.vmap` over heads, batch and query positions.
It computes the same function as `attention.multi_head_attend('scaled_dot', {}, ...)`.

`FusedGRUCell` / `build_prototype` / `prototype_params`: the translation model with fused GRU cells (two
matmuls per step instead of six), the same function as the library model after a parameter conversion.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from attention_jax import weighting

Array = jax.Array


def einsum_multi_head_attend(query: Array, keys: Array, values: Array, mask: Array | None = None
                             ) -> tuple[Array, Array]:
  """Scaled dot-product attention per head with whole-batch einsums.

  Args:
    query: [B, T, N, h]; keys: [B, S, N, h]; values: [B, S, N, h_v].
    mask: optional bool [B, S] or [B, T, S], True = attend.

  Returns:
    (context [B, T, N, h_v] in values.dtype, weights [B, N, T, S] float32).
  """
  accumulate = jnp.promote_types(query.dtype, jnp.float32)
  scores_BNTS = jnp.einsum('btnh,bsnh->bnts', query.astype(accumulate), keys.astype(accumulate))
  scores_BNTS = scores_BNTS / math.sqrt(keys.shape[-1])
  if mask is not None:
    mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None, :, :]
  weights_BNTS = weighting.masked_softmax(scores_BNTS, mask)
  context_BTNH = jnp.einsum('bnts,bsnh->btnh', weights_BNTS, values.astype(accumulate))
  return context_BTNH.astype(values.dtype), weights_BNTS


# ----------------------------------------------------------------------------------------------------------
# Prototype of a faster recurrent cell for the translation model (measured by benchmarks.throughput's
# `attention_jax_prototype`; the library's models are unchanged). The other half of the former prototype,
# the readout and output layer after the decoder scan, is now `models.decoders.BahdanauCell.teacher_forced`.

from typing import Any  # noqa: E402

import flax.linen as nn  # noqa: E402

from attention_jax.models import decoders  # noqa: E402
from attention_jax.models import seq2seq  # noqa: E402


class FusedGRUCell(nn.RNNCellBase):
  """`flax.linen.GRUCell`'s function with two matmuls per step instead of six.

  r = sigmoid(x W_ir + b_ir + h W_hr), z = sigmoid(x W_iz + b_iz + h W_hz),
  n = tanh(x W_in + b_in + r * (h W_hn + b_hn)), h' = (1 - z) n + z h, with W_i = [W_ir | W_iz | W_in] and
  W_h = [W_hr | W_hz | W_hn] stored as single [d_in, 3H] and [H, 3H] kernels.
  """
  features: int
  dtype: Any = jnp.float32
  carry_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, carry, inputs):
    h = carry
    x_gates = nn.Dense(3 * self.features, dtype=self.dtype, name='input')(inputs)
    h_gates = nn.Dense(3 * self.features, use_bias=False, dtype=self.dtype, name='hidden')(h)
    b_hn = self.param('hidden_bias_n', nn.initializers.zeros_init(), (self.features,))
    x_r, x_z, x_n = jnp.split(x_gates, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h_gates, 3, axis=-1)
    r = nn.sigmoid(x_r + h_r)
    z = nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * (h_n + b_hn))
    new_h = ((1.0 - z) * n + z * h).astype(h.dtype)
    return new_h, new_h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return self.carry_init(rng, (*input_shape[:-1], self.features), self.dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1


def fuse_gru_params(gru_params: dict) -> dict:
  """`nn.GRUCell` parameters ({ir, iz, in, hr, hz, hn}) -> the same function's `FusedGRUCell` parameters."""
  cat = lambda names, leaf: jnp.concatenate([gru_params[n][leaf] for n in names], axis=-1)
  return {'input': {'kernel': cat(('ir', 'iz', 'in'), 'kernel'), 'bias': cat(('ir', 'iz', 'in'), 'bias')},
          'hidden': {'kernel': cat(('hr', 'hz', 'hn'), 'kernel')},
          'hidden_bias_n': gru_params['hn']['bias']}


class FusedGRUBahdanauCell(decoders.BahdanauCell):
  """The library's BahdanauCell with a `FusedGRUCell` as its RNN."""

  def _setup_common(self):
    super()._setup_common()
    self.rnn = FusedGRUCell(self.hidden_dim, dtype=self.dtype, name='fused_rnn')


class FusedGRUEncoder(nn.Module):
  """Unidirectional GRU encoder with `FusedGRUCell` (RNNEncoder's contract: outputs, summary)."""
  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, embedded, mask, *, train=False):
    del train
    lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)
    carry, outputs = nn.RNN(FusedGRUCell(self.hidden_dim, dtype=self.dtype), return_carry=True)(
        embedded, seq_lengths=lengths)
    return jnp.where(mask[..., None], outputs, 0.0), carry


class PrototypeSeq2Seq(seq2seq.Seq2Seq):
  """Seq2Seq with fused GRU cells in the Bahdanau GRU decoder and (encoder 'gru', one layer) the encoder. Same
  calling convention as Seq2Seq; `prototype_params` converts the library model's parameters."""

  def setup(self):
    if self.decoder != 'bahdanau' or self.decoder_cell != 'gru':
      raise ValueError('the prototype covers the Bahdanau decoder with a GRU cell only.')
    self.source_embed = nn.Embed(self.source_vocab_size, self.embed_dim, dtype=self.dtype)
    self.target_embed = nn.Embed(self.target_vocab_size, self.embed_dim, dtype=self.dtype)
    if self.encoder == 'gru' and self.encoder_layers == 1:
      self.source_encoder = FusedGRUEncoder(self.hidden_dim, dtype=self.dtype)
    else:
      self.source_encoder = seq2seq.make_encoder(self.encoder, hidden_dim=self.hidden_dim,
                                                 num_layers=self.encoder_layers, num_heads=self.num_heads,
                                                 mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
                                                 dtype=self.dtype)
    self.cell = FusedGRUBahdanauCell(vocab_size=self.target_vocab_size, hidden_dim=self.hidden_dim,
                                     cell_type=self.decoder_cell, scorer=self.scorer, weighting=self.weighting,
                                     scorer_options=self.scorer_options, dropout_rate=self.dropout_rate,
                                     dtype=self.dtype)
    self.dropout = nn.Dropout(self.dropout_rate)


def build_prototype(model_config: dict, **sizes) -> PrototypeSeq2Seq:
  """`models.build_model`'s validation, then the prototype model with the same fields."""
  reference = seq2seq.build_model(model_config, **sizes)
  fields = {f: getattr(reference, f) for f in seq2seq.MODEL_FIELDS}
  return PrototypeSeq2Seq(source_vocab_size=reference.source_vocab_size,
                          target_vocab_size=reference.target_vocab_size, **fields)


def prototype_params(params: dict) -> dict:
  """The library model's parameters -> PrototypeSeq2Seq's for the same fields (the same function)."""
  params = dict(params)                       # shallow copies: the caller's tree is left alone
  cell = dict(params['cell'])
  cell['fused_rnn'] = fuse_gru_params(cell.pop('rnn'))
  params['cell'] = cell
  if set(params['source_encoder']) == {'GRUCell_0'}:   # the one-layer 'gru' encoder
    params['source_encoder'] = {'FusedGRUCell_0': fuse_gru_params(params['source_encoder']['GRUCell_0'])}
  return params
