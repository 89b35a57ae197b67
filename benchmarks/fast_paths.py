"""Candidate fast paths measured by the benchmarks (prototypes; the library does not use them).

`einsum_multi_head_attend` is what a dot-product fast path in `attention.multi_head_attend` would look like:
one einsum over the whole batch and all heads instead of `jax.vmap` over heads, batch and query positions.
It computes the same function as `attention.multi_head_attend('scaled_dot', {}, ...)`.
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
# Prototypes of faster recurrent pieces for the translation model (measured by benchmarks.throughput with
# `--prototype`; the library's models are unchanged).

from typing import Any  # noqa: E402

import flax.linen as nn  # noqa: E402

from attention_jax.models import decoders  # noqa: E402
from attention_jax.models import seq2seq  # noqa: E402
from attention_jax.models.encoders import cell_output  # noqa: E402


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


class HoistedBahdanauCell(decoders.BahdanauCell):
  """BahdanauCell whose scan carries only the recurrence: the readout tanh(W [s_t; c_t; y_{t-1}]) and the
  vocabulary projection do not feed back, so they run once on [B, T, .] after the scan (large matmuls)."""
  fused_gru: bool = False

  def _setup_common(self):
    super()._setup_common()
    if self.fused_gru:
      self.rnn = FusedGRUCell(self.hidden_dim, dtype=self.dtype, name='fused_rnn')

  def recurrent_step(self, carry, prev_embedded, memory):
    context, weights = self._attend(cell_output(carry['rnn']), carry, memory)
    rnn_carry, state = self.rnn(carry['rnn'],
                                jnp.concatenate([prev_embedded, context.astype(prev_embedded.dtype)], -1))
    return {**carry, 'rnn': rnn_carry, 'prev_weights': weights}, (state, context, weights)

  def teacher_forced(self, carry, embedded_BTE, memory, *, train=False):
    _, (states_BTH, context_BTD, weights_BTS) = decoders._scan_steps(   # pylint: disable=protected-access
        lambda cell, c, x: cell.recurrent_step(c, x, memory), self, carry, embedded_BTE)
    readout = jnp.tanh(self.readout(jnp.concatenate([states_BTH, context_BTD.astype(states_BTH.dtype),
                                                     embedded_BTE], -1)))
    return self.output(self.dropout(readout, deterministic=not train)), weights_BTS


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
  """Seq2Seq with `HoistedBahdanauCell` (decoder='bahdanau' only) and, with fused_gru, fused GRU cells in the
  (unidirectional 'gru') encoder and the decoder. Same calling convention as Seq2Seq."""
  fused_gru: bool = False

  def setup(self):
    if self.decoder != 'bahdanau':
      raise ValueError('the prototype covers the Bahdanau decoder only.')
    self.source_embed = nn.Embed(self.source_vocab_size, self.embed_dim, dtype=self.dtype)
    self.target_embed = nn.Embed(self.target_vocab_size, self.embed_dim, dtype=self.dtype)
    if self.fused_gru and self.encoder == 'gru':
      self.source_encoder = FusedGRUEncoder(self.hidden_dim, dtype=self.dtype)
    else:
      self.source_encoder = seq2seq.make_encoder(self.encoder, hidden_dim=self.hidden_dim,
                                                 num_layers=self.encoder_layers, num_heads=self.num_heads,
                                                 mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
                                                 dtype=self.dtype)
    self.cell = HoistedBahdanauCell(vocab_size=self.target_vocab_size, hidden_dim=self.hidden_dim,
                                    cell_type=self.decoder_cell, scorer=self.scorer, weighting=self.weighting,
                                    scorer_options=self.scorer_options, dropout_rate=self.dropout_rate,
                                    dtype=self.dtype, fused_gru=self.fused_gru)
    self.dropout = nn.Dropout(self.dropout_rate)


def build_prototype(model_config: dict, *, fused_gru: bool, **sizes) -> PrototypeSeq2Seq:
  """`models.build_model`'s validation, then the prototype model with the same fields."""
  reference = seq2seq.build_model(model_config, **sizes)
  fields = {f: getattr(reference, f) for f in seq2seq.MODEL_FIELDS}
  return PrototypeSeq2Seq(source_vocab_size=reference.source_vocab_size,
                          target_vocab_size=reference.target_vocab_size, fused_gru=fused_gru, **fields)
