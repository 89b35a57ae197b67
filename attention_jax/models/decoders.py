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

How the attention cells turn scores into weights (the same in both styles; see `attention_jax.weighting`):
  * locality 'global' (the default): `weighting` ('softmax', 'sparsemax', 'entmax15') over every source position.
  * locality 'local_m' / 'local_p' (Luong et al. 2015, section 3.2, eq. 9-10): softmax inside the window
    [p_t - D, p_t + D] times a Gaussian centred on p_t (sigma = D / 2); local_m: p_t = t, local_p:
    p_t = S_true * sigmoid(v_p^T tanh(W_p q_t)) with q_t the attention query and S_true the source length.
  * weighting 'monotonic' (Raffel et al. 2017): p_i = sigmoid(e_i + r) (+ Gaussian noise of std
    `monotonic_noise` before the sigmoid, in training only), then the expected alignment from the previous
    step's weights while training and evaluating with teacher forcing, and hard monotonic attention (the first
    position at or after the previous one with p_i > 0.5) when decoding step by step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax import attention as attention_lib
from attention_jax import copy_attention as copy_lib
from attention_jax import scoring
from attention_jax import weighting as weighting_lib
from attention_jax.models import recurrence
from attention_jax.models.recurrence import FusedCell
from attention_jax.models.recurrence import cell_output
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
    source_ids: [B, S] int, the source tokens, for copy attention (None when the decoder does not copy).
  """
  prepared: PreparedKeys | None
  values: Array
  mask: Array
  summary: Array
  source_ids: Array | None = None


def _scan_steps(fn, module, carry, xs, in_axes: int = 1):
  """Runs fn(module, carry, x_t) over axis `in_axes` of xs (outputs stacked on axis 1), params shared by all steps."""
  scan = nn.scan(fn, variable_broadcast='params', split_rngs={'params': False, 'dropout': True}, in_axes=in_axes,
                 out_axes=1)
  return scan(module, carry, xs)


def _split_input_kernels(kernels: recurrence.FusedKernels, embed_dim: int
                         ) -> tuple[recurrence.FusedKernels, Array]:
  """An RNN fed [y_{t-1}; f_t] -> (the kernels restricted to the y part, with the bias; W_i's rows for f [D_f, G]).

  The y part does not depend on the recurrence, so its gates are computed for all steps before the scan.
  """
  return kernels._replace(input_kernel=kernels.input_kernel[:embed_dim]), kernels.input_kernel[embed_dim:]


LOCALITIES = ('global', 'local_m', 'local_p')


def check_attention_choices(decoder: str, weighting: str, locality: str, local_window: int,
                            monotonic_noise: float) -> None:
  """Raises ValueError, naming what is allowed, for an attention configuration the decoders cannot run."""
  valid_weightings = (*sorted(weighting_lib.WEIGHTINGS), *weighting_lib.DECODER_WEIGHTINGS)
  if weighting not in valid_weightings:
    raise ValueError(f'Unknown weighting {weighting!r}. Valid weightings: {", ".join(valid_weightings)}.')
  if locality not in LOCALITIES:
    raise ValueError(f'Unknown locality {locality!r}. Valid localities: {", ".join(LOCALITIES)}.')
  if locality != 'global':
    if decoder == 'none':
      raise ValueError(f"locality={locality!r} needs an attention decoder (bahdanau or luong), not decoder='none'.")
    if weighting != 'softmax':
      raise ValueError(f"locality={locality!r} is Luong et al.'s softmax over a window (eq. 10); it takes "
                       f"weighting='softmax', not {weighting!r}.")
    if int(local_window) != local_window or local_window < 1:
      raise ValueError(f'local_window must be an integer D >= 1 (Luong et al. use 10); got {local_window!r}.')
  if weighting == 'monotonic' and decoder == 'none':
    raise ValueError("weighting='monotonic' needs an attention decoder (bahdanau or luong), not decoder='none'.")
  if monotonic_noise < 0:
    raise ValueError(f'monotonic_noise is a standard deviation >= 0; got {monotonic_noise!r}.')


class _CellBase(nn.Module):
  """Shared fields, the decoder's initial state and the attention step (scores -> weights -> context).

  Attributes (attention): scorer, scorer_options, weighting ('softmax' | 'sparsemax' | 'entmax15' |
  'monotonic'), locality ('global' | 'local_m' | 'local_p'), local_window (D), monotonic_noise (std of the
  pre-sigmoid noise in training), monotonic_bias_init (r's initial value; -4 as in Raffel et al.'s guidance).
  """
  vocab_size: int
  hidden_dim: int = 128
  cell_type: str = 'gru'
  scorer: str = 'additive'
  weighting: str = 'softmax'
  scorer_options: Mapping[str, Any] = FrozenDict()
  locality: str = 'global'
  local_window: int = 10
  monotonic_noise: float = 1.0
  monotonic_bias_init: float = -4.0
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def _setup_common(self):
    self.rnn = FusedCell(self.cell_type, self.hidden_dim, dtype=self.dtype)
    self.bridge = nn.Dense(self.hidden_dim, dtype=self.dtype, name='bridge')
    self.output = nn.Dense(self.vocab_size, dtype=self.dtype, name='output')
    self.dropout = nn.Dropout(self.dropout_rate)

  def vocabulary_logits(self, hidden: Array, train: bool) -> Array:
    """W_o dropout(hidden): [..., H] -> [..., V].

    Flattened to [N, H] first: on [B, T, .] the kernel's gradient contracts two axes, which XLA:CPU lowers with
    a transpose of the [B, T, V] cotangent; as plain matmuls the output layer took 30% less time, forward+backward
    (measured on CPU at [64, 20, 256] x [256, 4000]).
    """
    flat = self.dropout(hidden.reshape(-1, hidden.shape[-1]), deterministic=not train)
    logits = self.output(flat)
    return logits.reshape(*hidden.shape[:-1], logits.shape[-1])

  def readout_logits(self, state: Array, context: Array, prev_embedded: Array, train: bool) -> Array:
    """logits = W_o dropout(tanh(W_r [s_t; c_t; y_{t-1}])): [..., H], [..., D_enc], [..., E] -> [..., V], for
    the cells with a readout layer `self.readout` (Bahdanau, the plain baseline)."""
    inputs = jnp.concatenate([state, context.astype(state.dtype), prev_embedded], -1)
    readout = jnp.tanh(self.readout(inputs.reshape(-1, inputs.shape[-1])))
    return self.vocabulary_logits(readout.reshape(*inputs.shape[:-1], -1), train)

  @property
  def scorer_state(self) -> Mapping[str, scoring.DecoderState]:
    """The decoder state the scorer declares it consumes (carried under carry['scorer_state'])."""
    return scoring.get(self.scorer).state

  @property
  def weighting_state(self) -> Mapping[str, scoring.DecoderState]:
    """The decoder state the weighting and locality carry (under carry['weighting_state']): local_m's step
    counter t [B], monotonic attention's previous weights [B, S]."""
    if self.weighting == 'monotonic':
      return {'prev_weights': scoring.DecoderState(init=weighting_lib.first_position,
                                                   update=lambda previous, weights: weights)}
    if self.locality == 'local_m':
      return {'step': scoring.DecoderState(init=lambda mask: jnp.zeros(mask.shape[:1], jnp.float32),
                                           update=lambda previous, weights: previous + 1.0)}
    return {}

  @property
  def _plain_weighting(self) -> bool:
    return self.locality == 'global' and self.weighting not in weighting_lib.DECODER_WEIGHTINGS

  def _setup_attention(self):
    check_attention_choices('attention', self.weighting, self.locality, self.local_window, self.monotonic_noise)
    # A decoder-only weighting scores with the module and weights here; the module's own weighting is unused.
    module_weighting = self.weighting if self.weighting in weighting_lib.WEIGHTINGS else 'softmax'
    self.attention = Attention(scorer=self.scorer, weighting=module_weighting, scorer_options=self.scorer_options)
    # Scorers that need d_q == d_k (dot, scaled_dot, cosine) see keys projected to the decoder's size.
    self.key_projection = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name='key_projection')
    if self.locality == 'local_p':       # p_t = S * sigmoid(v_p^T tanh(W_p q_t)) (Luong et al. eq. 9)
      self.position_hidden = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name='W_p')
      self.position_out = nn.Dense(1, use_bias=False, dtype=jnp.float32, name='v_p')
    if self.weighting == 'monotonic':
      self.monotonic_bias = self.param('monotonic_bias', nn.initializers.constant(self.monotonic_bias_init), ())

  def local_center(self, query: Array, mask: Array, step: Array | None) -> Array:
    """p_t for local attention: query [B, (T,) H], mask [B, S] -> [B, (T,)] float32 (local_m: step, [B, (T,)])."""
    if self.locality == 'local_m':
      return step
    lengths = jnp.sum(mask, axis=-1).astype(jnp.float32).reshape(-1, *([1] * (query.ndim - 2)))
    hidden = jnp.tanh(self.position_hidden(query))
    return lengths * jax.nn.sigmoid(self.position_out(hidden)[..., 0].astype(jnp.float32))

  def attention_weights(self, scores: Array, query: Array, mask: Array, weighting_state: dict, *, train: bool,
                        hard: bool, step: Array | None = None) -> Array:
    """scores [B, (T,) S], mask [B, S] -> weights [B, (T,) S] float32 for the non-global localities and decoder
    weightings.

    step: local_m's p_t, [B] or [B, T] (default: weighting_state['step']). Monotonic attention runs one step at a
    time ([B, S]) from weighting_state['prev_weights'].
    """
    if self.locality != 'global':
      center = jnp.broadcast_to(self.local_center(query, mask, weighting_state.get('step') if step is None else step),
                                scores.shape[:-1])
      window = int(self.local_window)
      local = jax.vmap(lambda z, m, c: weighting_lib.local_weights(z, m, c, window))
      flat = lambda x: x.reshape(-1, *x.shape[scores.ndim - 1:])
      mask_like_scores = jnp.broadcast_to(mask[:, None, :] if scores.ndim == 3 else mask, scores.shape)
      return local(flat(scores), flat(mask_like_scores), flat(center)).reshape(scores.shape)
    # monotonic
    energies = scores + self.monotonic_bias
    if train and self.monotonic_noise > 0:
      energies = energies + self.monotonic_noise * jax.random.normal(self.make_rng('dropout'), energies.shape)
    p_choose = jax.nn.sigmoid(energies) * mask
    previous = weighting_state['prev_weights']
    if hard:
      return weighting_lib.hard_monotonic_weights(p_choose, previous)
    # The recursion, not the parallel cumprod form: once p saturates near 1 the parallel form divides by
    # cumulative products at the log-space floor (~1e-35), and its gradient (1 / C^2) overflows float32.
    return weighting_lib.monotonic_weights(p_choose, previous, mode='recursive')

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
        'weighting_state': {name: state.init(memory.mask) for name, state in self.weighting_state.items()},
    }

  def _attend(self, query: Array, carry: dict, memory: Memory, *, train: bool = False,
              hard: bool = False) -> tuple[Array, Array, dict]:
    """query [B, H] -> (context [B, D_enc], weights [B, S], carry with the scorer's and weighting's state updated).

    hard: step-by-step decoding (monotonic attention decides hard, see the module docstring).
    """
    previous = carry['scorer_state']
    if self._plain_weighting:
      context, weights = self.attention.attend_prepared(query, memory.prepared, memory.values, memory.mask,
                                                        **previous)
    else:
      scores = self.attention.score_prepared(query, memory.prepared, **previous)
      weights = self.attention_weights(scores, query, memory.mask, carry['weighting_state'], train=train,
                                       hard=hard)
      context = attention_lib.context(weights, memory.values)
    updated = {name: state.update(previous[name], weights) for name, state in self.scorer_state.items()}
    weighting_state = {name: state.update(carry['weighting_state'][name], weights)
                       for name, state in self.weighting_state.items()}
    return context, weights, {**carry, 'scorer_state': updated, 'weighting_state': weighting_state}


class BahdanauCell(_CellBase):
  """RNNsearch step: attend with s_{t-1}, s_t = RNN(s_{t-1}, [y_{t-1}; c_t]), readout([s_t; c_t; y_{t-1}]).

  copy_attention: the pointer-generator (See et al. 2017): p_gen = sigmoid(w_c^T c_t + w_s^T s_t + w_x^T y_{t-1} + b)
  mixes the vocabulary distribution with the attention weights scattered onto the source ids
  (`attention_jax.copy_attention`); the cell then outputs log P(w) (normalised, so it stands for logits
  everywhere) and sows p_gen [B, (T,)] as intermediates 'p_gen'. Needs memory.source_ids in the target vocabulary.
  """
  copy_attention: bool = False

  def setup(self):
    self._setup_common()
    self._setup_attention()
    self.readout = nn.Dense(self.hidden_dim, dtype=self.dtype, name='readout')
    if self.copy_attention:
      self.copy_gate = nn.Dense(1, dtype=jnp.float32, name='copy_gate')

  def output_log_probs(self, logits: Array, state: Array, context: Array, prev_embedded: Array, weights: Array,
                       memory: Memory) -> Array:
    """The pointer-generator's log P: logits [B, (T,) V], state/context/prev_embedded [B, (T,) .], weights
    [B, (T,) S] -> [B, (T,) V] float32; sows p_gen [B, (T,)]."""
    if memory.source_ids is None:
      raise ValueError('copy_attention needs the source ids in the Memory (Seq2Seq.encode puts them there).')
    gate_inputs = jnp.concatenate([context, state, prev_embedded], -1).astype(jnp.float32)
    p_gen = jax.nn.sigmoid(self.copy_gate(gate_inputs)[..., 0])
    self.sow('intermediates', 'p_gen', p_gen)
    return copy_lib.pointer_generator_log_probs(logits, weights, memory.source_ids, memory.mask, p_gen,
                                                extended_vocab_size=self.vocab_size)

  def recurrent_step(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False,
                     hard: bool = False):
    """The part of a step that feeds back: attend with s_{t-1}, then s_t = RNN(s_{t-1}, [y_{t-1}; c_t]).

    carry, prev_embedded [B, E] -> carry, (s_t [B, H], c_t [B, D_enc], weights [B, S]).
    """
    context, weights, carry = self._attend(cell_output(carry['rnn']), carry, memory, train=train, hard=hard)
    rnn_carry, state = self.rnn(carry['rnn'], jnp.concatenate([prev_embedded, context.astype(prev_embedded.dtype)],
                                                              -1))
    return {**carry, 'rnn': rnn_carry}, (state, context, weights)

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False,
               hard: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S]). hard: step-by-step decoding."""
    carry, (state, context, weights) = self.recurrent_step(carry, prev_embedded, memory, train=train, hard=hard)
    logits = self.readout_logits(state, context, prev_embedded, train)
    if self.copy_attention:
      logits = self.output_log_probs(logits, state, context, prev_embedded, weights, memory)
    return carry, (logits, weights)

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    """All target steps -> (logits [B, T, V], weights [B, T, S]).

    Only the recurrence is scanned. The readout and the vocabulary projection do not feed back, so they run
    once on [B, T, .] after the scan: a few large matmuls instead of T small dependent ones inside the loop,
    forward and backward. The RNN's input gates are split the same way: y_{t-1}'s part (with the bias) for all
    steps at once before the scan, only the context's part inside it. Dropout sits in the same place as in
    `__call__` (on the readout, before `output`).
    """
    embed_dim = embedded_BTE.shape[-1]
    kernels = self.rnn.kernels(embed_dim + memory.values.shape[-1])
    embedded_kernels, context_kernel = _split_input_kernels(kernels, embed_dim)
    embedded_gates_TBG = recurrence.input_gates(embedded_BTE, embedded_kernels)

    def step(cell, carry, embedded_gates):
      context, weights, carry = cell._attend(cell_output(carry['rnn']), carry, memory, train=train)
      gates = embedded_gates + jnp.dot(context.astype(context_kernel.dtype), context_kernel)
      rnn_carry, state = cell.rnn.step_from_gates(carry['rnn'], gates, kernels)
      return {**carry, 'rnn': rnn_carry}, (state, context, weights)

    _, (states_BTH, context_BTD, weights_BTS) = _scan_steps(step, self, carry, embedded_gates_TBG, in_axes=0)
    logits = self.readout_logits(states_BTH, context_BTD, embedded_BTE, train)
    if self.copy_attention:
      logits = self.output_log_probs(logits, states_BTH, context_BTD, embedded_BTE, weights_BTS, memory)
    return logits, weights_BTS


class LuongCell(_CellBase):
  """Luong step: h_t = RNN(h_{t-1}, x_t); attend with h_t; h~_t = tanh(W_c [c_t; h_t]); logits = W_s h~_t."""
  input_feeding: bool = True

  def setup(self):
    self._setup_common()
    self._setup_attention()
    self.combine = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name='combine')

  def _attentional(self, state: Array, context: Array) -> Array:
    """h~ = tanh(W_c [c; h]): [..., H], [..., D_enc] -> [..., H]."""
    return jnp.tanh(self.combine(jnp.concatenate([context.astype(state.dtype), state], -1)))

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False,
               hard: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S]). hard: step-by-step decoding."""
    x = prev_embedded
    if self.input_feeding:
      x = jnp.concatenate([prev_embedded, carry['attentional']], -1)
    rnn_carry, state = self.rnn(carry['rnn'], x)
    carry, (attentional, weights) = self._attend_and_combine(carry, rnn_carry, state, memory, train=train, hard=hard)
    return carry, (self.vocabulary_logits(attentional, train), weights)

  def _attend_and_combine(self, carry: dict, rnn_carry, state: Array, memory: Memory, *, train: bool, hard: bool):
    """After the RNN: attend with h_t and combine -> carry, (h~_t [B, H], weights [B, S])."""
    context, weights, carry = self._attend(state, carry, memory, train=train, hard=hard)
    attentional = self._attentional(state, context)
    return {**carry, 'rnn': rnn_carry, 'attentional': attentional}, (attentional, weights)

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    """All target steps -> (logits [B, T, V], weights [B, T, S]).

    The parts that do not feed back run outside the scan for all steps at once: y_{t-1}'s share of the RNN's
    input gates (before it) and the vocabulary projection W_s h~_t (after it). Without input feeding (and with
    a scorer and weighting that carry no state from step to step, local_m's step counter aside) the RNN runs
    alone as one `recurrence.recurrence` and attention is computed for all T steps at once: queries [B, T, H]
    against the prepared keys.
    """
    embed_dim = embedded_BTE.shape[-1]
    input_dim = embed_dim + (self.hidden_dim if self.input_feeding else 0)
    kernels = self.rnn.kernels(input_dim)
    embedded_kernels, feeding_kernel = _split_input_kernels(kernels, embed_dim)
    embedded_gates_TBG = recurrence.input_gates(embedded_BTE, embedded_kernels)
    if self.input_feeding or self.scorer_state or self.weighting == 'monotonic':

      def step(cell, carry, embedded_gates):
        gates = embedded_gates
        if cell.input_feeding:
          gates = gates + jnp.dot(carry['attentional'].astype(feeding_kernel.dtype), feeding_kernel)
        rnn_carry, state = cell.rnn.step_from_gates(carry['rnn'], gates, kernels)
        return cell._attend_and_combine(carry, rnn_carry, state, memory, train=train, hard=False)

      _, (attentional_BTH, weights_BTS) = _scan_steps(step, self, carry, embedded_gates_TBG, in_axes=0)
      return self.vocabulary_logits(attentional_BTH, train), weights_BTS
    # The RNN alone: one recurrence with a batched weight gradient (`recurrence.recurrence`).
    states_BTH, _ = recurrence.run_from_gates(self.cell_type, embedded_gates_TBG, carry['rnn'], kernels)
    if self._plain_weighting:
      context_BTD, weights_BTS = self.attention.attend_prepared(states_BTH, memory.prepared, memory.values,
                                                                memory.mask)
    else:
      scores_BTS = self.attention.score_prepared(states_BTH, memory.prepared)
      steps_BT = jnp.broadcast_to(jnp.arange(embedded_BTE.shape[1], dtype=jnp.float32), embedded_BTE.shape[:2])
      weights_BTS = self.attention_weights(scores_BTS, states_BTH, memory.mask, {}, train=train, hard=False,
                                           step=steps_BT)
      context_BTD = attention_lib.context(weights_BTS, jnp.broadcast_to(
          memory.values[:, None], (*weights_BTS.shape, memory.values.shape[-1])))
    return self.vocabulary_logits(self._attentional(states_BTH, context_BTD), train), weights_BTS


class PlainCell(_CellBase):
  """No-attention baseline: s_t = RNN(s_{t-1}, [y_{t-1}; c]), readout([s_t; c; y_{t-1}]), c = encoder summary."""

  def setup(self):
    self._setup_common()
    self.readout = nn.Dense(self.hidden_dim, dtype=self.dtype, name='readout')

  def prepare_memory(self, encoded: Array, mask: Array, summary: Array) -> Memory:
    return Memory(None, encoded, mask, summary)

  def __call__(self, carry: dict, prev_embedded: Array, memory: Memory, *, train: bool = False,
               hard: bool = False):
    """carry, prev_embedded [B, E] -> carry, (logits [B, V], weights [B, S] all zero)."""
    context = memory.summary.astype(prev_embedded.dtype)
    rnn_carry, state = self.rnn(carry['rnn'], jnp.concatenate([prev_embedded, context], -1))
    logits = self.readout_logits(state, context, prev_embedded, train)
    return {**carry, 'rnn': rnn_carry}, (logits, jnp.zeros(memory.mask.shape, jnp.float32))

  def teacher_forced(self, carry: dict, embedded_BTE: Array, memory: Memory, *, train: bool = False):
    """All target steps -> (logits [B, T, V], weights [B, T, S] all zero).

    The context is the same at every step, so the RNN's input gates for all steps come from one matmul, the
    RNN runs as one `recurrence.recurrence`, and the readout and logits are computed after it.
    """
    embed_dim = embedded_BTE.shape[-1]
    context = memory.summary.astype(embedded_BTE.dtype)
    kernels = self.rnn.kernels(embed_dim + context.shape[-1])
    embedded_kernels, context_kernel = _split_input_kernels(kernels, embed_dim)
    context_gates = jnp.dot(context.astype(context_kernel.dtype), context_kernel)
    gates_TBG = recurrence.input_gates(embedded_BTE, embedded_kernels) + context_gates[None]
    states_BTH, _ = recurrence.run_from_gates(self.cell_type, gates_TBG, carry['rnn'], kernels)
    context_BTD = jnp.broadcast_to(context[:, None], (*states_BTH.shape[:2], context.shape[-1]))
    logits = self.readout_logits(states_BTH, context_BTD, embedded_BTE, train)
    return logits, jnp.zeros((*logits.shape[:2], memory.mask.shape[-1]), jnp.float32)


DECODERS = {'bahdanau': BahdanauCell, 'luong': LuongCell, 'none': PlainCell}
