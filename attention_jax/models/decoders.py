"""Attention decoders: one decoding step as a Flax module, run as a scan for teacher forcing.

A decoder cell owns its RNN cell, attention and output layers. The encoder's states are turned into a
`Memory` once per source batch (including the scorer's key-side work), then every step is

    carry, (logits [B, V], weights [B, S]) = cell(carry, prev_token_embedding [B, E], memory, train=...)

Styles (see ../shared formulas in the README):
  * BahdanauCell (RNNsearch): a_t from the PREVIOUS state s_{t-1}; c_t is fed with y_{t-1} into the RNN;
    readout from [s_t; c_t; y_{t-1}]. The readout does not feed back, so `teacher_forced` scans only the
    recurrence and computes the readout and logits for all T steps at once after the scan.
  * LuongCell: h_t = RNN(h_{t-1}, x_t) first; a_t from the CURRENT h_t; attentional state
    h~_t = tanh(W_c [c_t; h_t]); logits = W_s h~_t. With input feeding, x_t = [y_{t-1}; h~_{t-1}].
    Without it the RNN does not depend on attention, so `teacher_forced` runs the RNN as one scan and then
    attends for all target steps in parallel.
  * PlainCell: the no-attention baseline (Cho et al. 2014 / RNNencdec): the context is the encoder summary,
    the same at every step; its "weights" are all zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax import scoring
from attention_jax.models.encoders import cell_output
from attention_jax.models.encoders import rnn_cell
from attention_jax.modules import Attention
from attention_jax.modules import PreparedKeys

Array = jax.Array


@flax.struct.dataclass
class Memory:
  """What the decoder attends to, prepared once per source batch.

  Attributes:
    prepared: the scorer's key-side work (`PreparedKeys`, leading axis B), or None without attention.
    values: encoder outputs [B, S, D_enc].
    mask: [B, S] bool, True = real source token.
    summary: [B, D_sum] encoder summary (initialises the decoder; the baseline's fixed context).
  """
  prepared: PreparedKeys | None
  values: Array
  mask: Array
  summary: Array


def _scan_steps(fn, module, carry, xs_BT):
  """Runs fn(module, carry, x_t) over axis 1 of xs with the module's params shared by all steps."""
  scan = nn.scan(fn, variable_broadcast='params', split_rngs={'params': False, 'dropout': True}, in_axes=1,
                 out_axes=1)
  return scan(module, carry, xs_BT)


class _CellBase(nn.Module):
  """Shared fields and the decoder's initial state."""
  vocab_size: int
  hidden_dim: int = 128
  cell_type: str = 'gru'
  scorer: str = 'additive'
  weighting: str = 'softmax'
  scorer_options: Mapping[str, Any] = FrozenDict()
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def _setup_common(self):
    self.rnn = rnn_cell(self.cell_type, self.hidden_dim, dtype=self.dtype)
    self.bridge = nn.Dense(self.hidden_dim, dtype=self.dtype, name='bridge')
    self.output = nn.Dense(self.vocab_size, dtype=self.dtype, name='output')
    self.dropout = nn.Dropout(self.dropout_rate)

  @property
  def scorer_state(self) -> Mapping[str, scoring.DecoderState]:
    """The decoder state the scorer declares it consumes (carried under carry['scorer_state'])."""
    return scoring.get(self.scorer).state

  def _setup_attention(self):
    self.attention = Attention(scorer=self.scorer, weighting=self.weighting, scorer_options=self.scorer_options)
    # Scorers that need d_q == d_k (dot, scaled_dot, cosine) see keys projected to the decoder's size.
    self.key_projection = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name='key_projection')

  def prepare_memory(self, encoded: Array, mask: Array, summary: Array) -> Memory:
    """encoded [B, S, D_enc], mask [B, S], summary [B, D_sum] -> Memory (key-side work done once)."""
    keys = encoded
    if scoring.get(self.scorer).equal_dims and encoded.shape[-1] != self.hidden_dim:
      keys = self.key_projection(encoded)
    prepared = self.attention.prepare_keys(keys, query_dim=self.hidden_dim)
    return Memory(prepared, encoded, mask, summary)

  def initial_state(self, memory: Memory) -> dict[str, Array]:
    """Decoder state before the first step: h_0 = tanh(W summary), Luong's h~_0 = 0 and the state the scorer
    declares (`scoring.Scorer.state`, e.g. location_aware's previous weights)."""
    h0 = jnp.tanh(self.bridge(memory.summary)).astype(self.dtype)
    rnn_carry = (jnp.zeros_like(h0), h0) if self.cell_type == 'lstm' else h0
    return {
        'rnn': rnn_carry,
        'attentional': jnp.zeros_like(h0),
        'scorer_state': {name: state.init(memory.mask) for name, state in self.scorer_state.items()},
    }

  def _attend(self, query: Array, carry: dict, memory: Memory) -> tuple[Array, Array, dict]:
    """query [B, H] -> (context [B, D_enc], weights [B, S], carry with the scorer's state updated)."""
    previous = carry['scorer_state']
    context, weights = self.attention.attend_prepared(query, memory.prepared, memory.values, memory.mask,
                                                      **previous)
    updated = {name: state.update(previous[name], weights) for name, state in self.scorer_state.items()}
    return context, weights, {**carry, 'scorer_state': updated}


class BahdanauCell(_CellBase):
  """RNNsearch step: attend with s_{t-1}, s_t = RNN(s_{t-1}, [y_{t-1}; c_t]), readout([s_t; c_t; y_{t-1}])."""

  def setup(self):
    self._setup_common()
    self._setup_attention()
    self.readout = nn.Dense(self.hidden_dim, dtype=self.dtype, name='readout')

  def recurrent_step(self, carry: dict, prev_embedded: Array, memory: Memory):
    """The part of a step that feeds back: attend with s_{t-1}, then s_t = RNN(s_{t-1}, [y_{t-1}; c_t]).

    carry, prev_embedded [B, E] -> carry, (s_t [B, H], c_t [B, D_enc], weights [B, S]).
    """
    context, weights, carry = self._attend(cell_output(carry['rnn']), carry, memory)
    rnn_carry, state = self.rnn(carry['rnn'], jnp.concatenate([prev_embedded, context.astype(prev_embedded.dtype)],
                                                              -1))
    return {**carry, 'rnn': rnn_carry}, (state, context, weights)

  def readout_logits(self, state: Array, context: Array, prev_embedded: Array, train: bool) -> Array:
    """logits = W_o dropout(tanh(W_r [s_t; c_t; y_{t-1}])): [..., H], [..., D_enc], [..., E] -> [..., V]."""
    inputs = jnp.concatenate([state, context.astype(state.dtype), prev_embedded], -1)
    # Flattened to [N, .]: on [B, T, .] the kernels' gradients contract two axes, which XLA:CPU lowers with a
    # transpose of the [B, T, V] cotangent; as plain matmuls the output layer took 30% less time, forward+backward
    # (measured on CPU at [64, 20, 256] x [256, 4000]).
    readout = jnp.tanh(self.readout(inputs.reshape(-1, inputs.shape[-1])))
    logits = self.output(self.dropout(readout, deterministic=not train))
    return logits.reshape(*inputs.shape[:-1], logits.shape[-1])

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S])."""
    carry, (state, context, weights) = self.recurrent_step(carry, prev_embedded, memory)
    return carry, (self.readout_logits(state, context, prev_embedded, train), weights)

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    """All target steps -> (logits [B, T, V], weights [B, T, S]).

    Only the recurrence is scanned. The readout and the vocabulary projection do not feed back, so they run
    once on [B, T, .] after the scan: a few large matmuls instead of T small dependent ones inside the loop,
    forward and backward. Dropout sits in the same place as in `__call__` (on the readout, before `output`).
    """
    _, (states_BTH, context_BTD, weights_BTS) = _scan_steps(lambda cell, c, x: cell.recurrent_step(c, x, memory),
                                                            self, carry, embedded_BTE)
    return self.readout_logits(states_BTH, context_BTD, embedded_BTE, train), weights_BTS


class LuongCell(_CellBase):
  """Luong step: h_t = RNN(h_{t-1}, x_t); attend with h_t; h~_t = tanh(W_c [c_t; h_t]); logits = W_s h~_t."""
  input_feeding: bool = True

  def setup(self):
    self._setup_common()
    self._setup_attention()
    self.combine = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name='combine')

  def _output(self, state: Array, context: Array, train: bool) -> tuple[Array, Array]:
    attentional = jnp.tanh(self.combine(jnp.concatenate([context.astype(state.dtype), state], -1)))
    return attentional, self.output(self.dropout(attentional, deterministic=not train))

  def rnn_step(self, rnn_carry, x: Array):
    return self.rnn(rnn_carry, x)

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S])."""
    x = prev_embedded
    if self.input_feeding:
      x = jnp.concatenate([prev_embedded, carry['attentional']], -1)
    rnn_carry, state = self.rnn(carry['rnn'], x)
    context, weights, carry = self._attend(state, carry, memory)
    attentional, logits = self._output(state, context, train)
    carry = {**carry, 'rnn': rnn_carry, 'attentional': attentional}
    return carry, (logits, weights)

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    """All target steps -> (logits [B, T, V], weights [B, T, S]).

    Without input feeding (and with a scorer that carries no state from step to step) the RNN runs as one scan
    and attention is computed for all T steps at once: queries [B, T, H] against the prepared keys.
    """
    if self.input_feeding or self.scorer_state:
      _, outputs = _scan_steps(lambda cell, c, x: cell(c, x, memory, train=train), self, carry, embedded_BTE)
      return outputs
    _, states_BTH = _scan_steps(lambda cell, c, x: cell.rnn_step(c, x), self, carry['rnn'], embedded_BTE)
    context_BTD, weights_BTS = self.attention.attend_prepared(states_BTH, memory.prepared, memory.values,
                                                              memory.mask)
    _, logits = self._output(states_BTH, context_BTD, train)
    return logits, weights_BTS


class PlainCell(_CellBase):
  """No-attention baseline: s_t = RNN(s_{t-1}, [y_{t-1}; c]), readout([s_t; c; y_{t-1}]), c = encoder summary."""

  def setup(self):
    self._setup_common()
    self.readout = nn.Dense(self.hidden_dim, dtype=self.dtype, name='readout')

  def prepare_memory(self, encoded: Array, mask: Array, summary: Array) -> Memory:
    return Memory(None, encoded, mask, summary)

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S] all zero)."""
    context = memory.summary.astype(prev_embedded.dtype)
    rnn_carry, state = self.rnn(carry['rnn'], jnp.concatenate([prev_embedded, context], -1))
    readout = jnp.tanh(self.readout(jnp.concatenate([state, context, prev_embedded], -1)))
    logits = self.output(self.dropout(readout, deterministic=not train))
    return {**carry, 'rnn': rnn_carry}, (logits, jnp.zeros(memory.mask.shape, jnp.float32))

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    _, outputs = _scan_steps(lambda cell, c, x: cell(c, x, memory, train=train), self, carry, embedded_BTE)
    return outputs


DECODERS = {'bahdanau': BahdanauCell, 'luong': LuongCell, 'none': PlainCell}
