"""The Bahdanau decoder's teacher-forced recurrence (GRU cell, additive attention, masked softmax) with a
hand-written backward pass: an experiment of `benchmarks.step_variants` (variant `hand_written_decoder_backward`),
not used by the library.

Each step t, from the previous state s = s_{t-1} [B, H]:

    q = s W_q                                   [B, A]
    e_j = v . tanh(K_j + q)                     [B, S]   K = W_k k_j (+ b): the prepared keys [B, S, A]
    a = masked_softmax(e, mask)                 [B, S]
    c = sum_j a_j V_j                           [B, D]   V: the values (encoder outputs) [B, S, D]
    x_gates = X_t + c W_c                       [B, 3H]  X_t: y_{t-1}'s input gates with the bias (precomputed)
    h_gates = s W_h + b_h                       [B, 3H]
    s_t = GRU(s, x_gates, h_gates)              (`recurrence.gru_gates`: r, z, n)

which is what `decoders.BahdanauCell.teacher_forced` computes by stepping the cell under `nn.scan` (equal to it to
float32 rounding; `step_variants` checks the gradient). Autodiff of the library's scan accumulates, in every
iteration of its backward loop, the gradients of everything the loop reads but does not carry (W_h, W_c and W_q as
[H, 64] x [64, G] products, the values and the keys as [B, S, .] sums) and keeps 14 stacked residuals. Here the
backward loop carries only the state's cotangent, the keys' (which needs each step's tanh layer) and v's; the
query's cotangent is one batched product of the scores' cotangent with the tanh layer's slope 1 - tanh^2 (the slope
depends on q_t alone, so only that product sits on the state's chain, not a [B, S, A] cotangent and its sum); the
weight gradients are single [H, T*B] x [T*B, G] matmuls after the loop and the values' one batched product
sum_t a_t^T dc_t. The forward loop keeps 8 stacked arrays.

Measured (BENCHMARKS.md section 2): the loss gradient alone 1.03-1.06x faster than with autodiff of the library's
scan, the training step a tie: in the step, XLA:CPU runs the matmuls after the loop before the encoder's backward
loop instead of beside it.
"""


from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attention_jax.models import recurrence

Array = jax.Array
# The masked softmax's fill for masked scores (weighting.masked_softmax's): finite, so that a fully masked row
# has finite gradients; its weights are then set to zero.
_MASK_FILL = float(jnp.finfo(jnp.float32).min)


class StepParams(NamedTuple):
  """The step's parameters: hidden_kernel W_h [H, 3H], hidden_bias b_h [3H] (the GRU's b_hn in its n third),
  context_kernel W_c [D, 3H], query_kernel W_q [H, A], v [A] (gates in the order r, z, n)."""
  hidden_kernel: Array
  hidden_bias: Array
  context_kernel: Array
  query_kernel: Array
  v: Array


def _attend(params: StepParams, state: Array, keys_BSA: Array, values_BSD: Array, mask_BS: Array):
  """-> (q [B, A], weights [B, S], context [B, D])."""
  q = state @ params.query_kernel
  scores = jnp.einsum('bsa,a->bs', jnp.tanh(keys_BSA + q[:, None, :]), params.v)
  weights = jax.nn.softmax(jnp.where(mask_BS, scores, _MASK_FILL), axis=-1)
  weights = jnp.where(mask_BS, weights, 0.0)
  return q, weights, jnp.einsum('bs,bsd->bd', weights, values_BSD)


def _forward(params: StepParams, x_gates_TBG: Array, state0: Array, keys_BSA: Array, values_BSD: Array,
             mask_BS: Array):
  """The forward loop -> (states [T, B, H], contexts [T, B, D], weights [T, B, S], residuals)."""

  def step(state, x_gates):
    q, weights, context = _attend(params, state, keys_BSA, values_BSD, mask_BS)
    gates_x = x_gates + context @ params.context_kernel
    gates_h = state @ params.hidden_kernel + params.hidden_bias
    x_r, x_z, x_n = jnp.split(gates_x, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gates_h, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    new = (1.0 - z) * n + z * state
    return new, (new, context, weights, q, r, z, n, h_n)

  _, (states, contexts, weights, q, r, z, n, h_n) = recurrence.prefetching_scan(step, state0, x_gates_TBG)
  return states, contexts, weights, (q, r, z, n, h_n)


@jax.custom_vjp
def teacher_forced_scan(params: StepParams, x_gates_TBG: Array, state0: Array, keys_BSA: Array,
                        values_BSD: Array, mask_BS: Array) -> tuple[Array, Array, Array]:
  """All T steps (see the module docstring), float32.

  Args:
    params: StepParams.
    x_gates_TBG: y_{t-1}'s share of the input gates with the input bias, time-major [T, B, 3H].
    state0: s_0 [B, H].
    keys_BSA: the additive scorer's prepared keys W_k k_j (+ b) [B, S, A].
    values_BSD: [B, S, D].
    mask_BS: bool [B, S], True = attend.

  Returns:
    (states s_1..s_T [T, B, H], contexts c_1..c_T [T, B, D], weights [T, B, S]).
  """
  states, contexts, weights, _ = _forward(params, x_gates_TBG, state0, keys_BSA, values_BSD, mask_BS)
  return states, contexts, weights


def _scan_fwd(params, x_gates_TBG, state0, keys_BSA, values_BSD, mask_BS):
  """The forward loop, keeping s_{t-1}, the contexts, the weights and (q, r, z, n, h_n) for the backward pass."""
  states, contexts, weights, kept = _forward(params, x_gates_TBG, state0, keys_BSA, values_BSD, mask_BS)
  previous = jnp.concatenate([state0[None], states[:-1]], axis=0)          # s_{t-1} for every t
  return (states, contexts, weights), (params, previous, contexts, weights, kept, keys_BSA, values_BSD, mask_BS)


def _scan_bwd(residuals, cotangents):
  """(states, contexts, weights) cotangents [T, B, .] -> the inputs' cotangents (none for the mask)."""
  params, previous, contexts, weights, (q, r, z, n, h_n), keys_BSA, values_BSD, mask_BS = residuals
  d_states, d_contexts, d_weights = cotangents
  hidden_kernel_t = params.hidden_kernel.T
  context_kernel_t = params.context_kernel.T
  query_kernel_t = params.query_kernel.T
  v = params.v

  def step(carry, inputs):
    d_state, d_keys, d_v = carry
    d_out, d_context_out, d_weights_out, s, w, q_t, r_t, z_t, n_t, hn_t = inputs
    d_s = d_state + d_out
    # GRU: s' = (1 - z) n + z s, n = tanh(x_n + r h_n), r = sigmoid(.), z = sigmoid(.).
    d_n_pre = d_s * (1.0 - z_t) * (1.0 - n_t * n_t)
    d_z_pre = d_s * (s - n_t) * z_t * (1.0 - z_t)
    d_r_pre = d_n_pre * hn_t * r_t * (1.0 - r_t)
    d_gates_x = jnp.concatenate([d_r_pre, d_z_pre, d_n_pre], axis=-1)
    d_gates_h = jnp.concatenate([d_r_pre, d_z_pre, d_n_pre * r_t], axis=-1)
    d_context = d_context_out + d_gates_x @ context_kernel_t
    # Attention: c = a V, a = masked softmax(e), e = v . tanh(K + q).
    d_w = jnp.einsum('bd,bsd->bs', d_context, values_BSD) + d_weights_out
    d_e = w * (d_w - jnp.sum(w * d_w, axis=-1, keepdims=True))
    hidden = jnp.tanh(keys_BSA + q_t[:, None, :])
    slope = 1.0 - hidden * hidden                                            # [B, S, A]; needs only q_t
    d_q = v * jnp.einsum('bs,bsa->ba', d_e, slope)                           # sum_j d_e_j v (1 - hidden_j^2)
    d_prev = d_s * z_t + d_gates_h @ hidden_kernel_t + d_q @ query_kernel_t
    carry = (d_prev, d_keys + d_e[:, :, None] * v * slope, d_v + jnp.einsum('bs,bsa->a', d_e, hidden))
    return carry, (d_gates_x, d_gates_h, d_q, d_context)

  (d_state0, d_keys, d_v), (d_gates_x, d_gates_h, d_q, d_context) = recurrence.prefetching_scan(
      step, (jnp.zeros_like(previous[0]), jnp.zeros_like(keys_BSA), jnp.zeros_like(v)),
      (d_states, d_contexts, d_weights, previous, weights, q, r, z, n, h_n), reverse=True)
  flat = lambda x: x.reshape(-1, x.shape[-1])                                # [T, B, .] -> [T*B, .]
  d_params = StepParams(hidden_kernel=flat(previous).T @ flat(d_gates_h),
                        hidden_bias=jnp.sum(flat(d_gates_h), axis=0),
                        context_kernel=flat(contexts).T @ flat(d_gates_x),
                        query_kernel=flat(previous).T @ flat(d_q),
                        v=d_v)
  d_values = jnp.einsum('tbs,tbd->bsd', weights, d_context)
  return d_params, d_gates_x, d_state0, d_keys, d_values, None


teacher_forced_scan.defvjp(_scan_fwd, _scan_bwd)
