"""Score -> weights -> context, for one example and batched (pure JAX, no Flax).

Single example (the definition; everything else is `jax.vmap` of it):

    context [d_v], weights [S] = attend(scorer, params, query [d_q], keys [S, d_k], values [S, d_v], mask [S])

Batched (vmapped over query positions, then over the batch; jit-compatible):

    context [B, d_v],    weights [B, S]    = batched_attend(scorer, params, query [B, d_q],    keys, values, mask)
    context [B, T, d_v], weights [B, T, S] = batched_attend(scorer, params, query [B, T, d_q], keys, values, mask)
        keys [B, S, d_k], values [B, S, d_v], mask [B, S] or [B, T, S] (True = attend)

For step-by-step decoding, do the key-side work once and reuse it:

    cache = batched_prepare_keys(scorer, params, keys)             # once per source batch
    context, weights = batched_attend_prepared(scorer, params, query_t, cache, values, mask)   # every step

Multi-head: `multi_head_attend` runs any stateless scorer per head (weights returned);
`fused_scaled_dot_attend` is the scaled_dot special case through `jax.nn.dot_product_attention` (XLA, or cuDNN's
fused kernel on NVIDIA GPUs), context only.

`scorer` is a registered name (see `attention_jax.scoring.names()`) or a `scoring.Scorer`; names are static,
so bind them before `jax.jit`: `jax.jit(functools.partial(batched_attend, 'additive'))`.
Weights are float32 (see `attention_jax.weighting`); the context has the dtype of `values`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from attention_jax import scoring
from attention_jax import weighting as weighting_lib

Array = jax.Array


def context(weights: Array, values: Array) -> Array:
  """The weighted sum of values, sum_j a_j v_j, accumulated in float32.

  Args:
    weights: [..., S].
    values: [..., S, d_v] (same leading shape as `weights`).

  Returns:
    [..., d_v] in the dtype of `values`.
  """
  if weights.shape[-1] != values.shape[-2]:
    raise ValueError(f'weights of shape {tuple(weights.shape)} and values of shape {tuple(values.shape)} disagree '
                     'on the number of source positions S (weights [..., S], values [..., S, d_v]).')
  accumulate = jnp.promote_types(values.dtype, jnp.float32)
  summed = jnp.einsum('...s,...sd->...d', weights.astype(accumulate), values.astype(accumulate))
  return summed.astype(values.dtype)


def _check_state(scorer: scoring.Scorer, state: dict[str, Any]) -> None:
  missing = [n for n in scorer.state_names if n not in state]
  extra = [n for n in state if n not in scorer.state_names]
  if missing or extra:
    needs = ', '.join(scorer.state_names) or 'no state'
    raise ValueError(f'scorer {scorer.name!r} takes {needs}; missing {missing}, unexpected {extra}.')


def attend_prepared(scorer: str | scoring.Scorer, params: dict, query: Array, key_cache: Any, values: Array,
                    mask: Array | None = None, *, weighting: str = 'softmax', **state: Array) -> tuple[Array, Array]:
  """`attend` with the key-side work already done by `scorer.prepare_keys(params, keys)`.

  Args: as `attend`, with `key_cache` in place of `keys`.
  Returns: (context [d_v], weights [S]).
  """
  scorer = scoring.get(scorer)
  _check_state(scorer, state)
  if values.ndim != 2:
    raise ValueError(f'values must have shape [S, d_v] (one example); got shape {tuple(values.shape)}.')
  scores = scorer.score_prepared(params, query, key_cache, **state)
  if scores.shape[-1] != values.shape[0]:
    raise ValueError(f'keys give {scores.shape[-1]} source positions but values of shape {tuple(values.shape)} '
                     f'have {values.shape[0]}.')
  if mask is not None and jnp.shape(mask) != scores.shape:
    raise ValueError(f'mask must have shape [S] = {scores.shape}; got shape {tuple(jnp.shape(mask))}.')
  weights = weighting_lib.get(weighting)(scores, mask)
  return context(weights, values), weights


def attend(scorer: str | scoring.Scorer, params: dict, query: Array, keys: Array, values: Array,
           mask: Array | None = None, *, weighting: str = 'softmax', **state: Array) -> tuple[Array, Array]:
  """One query of one example: score every key, weight, and sum the values.

  Args:
    scorer: registered scorer name or `scoring.Scorer`.
    params: the scorer's parameters (`scoring.init`).
    query: [d_q].
    keys: [S, d_k].
    values: [S, d_v].
    mask: optional bool [S], True = attend.
    weighting: 'softmax' or 'sparsemax'.
    **state: the scorer's state, e.g. `prev_weights` [S] for location_aware.

  Returns:
    (context [d_v] in values.dtype, weights [S] float32).
  """
  scorer = scoring.get(scorer)
  return attend_prepared(scorer, params, query, scorer.prepare_keys(params, keys), values, mask,
                         weighting=weighting, **state)


def check_batched(query: Array, keys: Array, values: Array, mask: Array | None, state: dict[str, Array]) -> None:
  """Raises ValueError, naming the shapes expected, unless the inputs fit `batched_attend`."""
  if keys.ndim != 3:
    raise ValueError(f'keys must have shape [B, S, d_k]; got shape {tuple(keys.shape)}.')
  batch, length = keys.shape[:2]
  if query.ndim not in (2, 3) or query.shape[0] != batch:
    raise ValueError(f'query must have shape [B, d_q] or [B, T, d_q] with B = {batch} (from keys of shape '
                     f'{tuple(keys.shape)}); got shape {tuple(query.shape)}.')
  if values.ndim != 3 or values.shape[:2] != (batch, length):
    raise ValueError(f'values must have shape [B, S, d_v] = [{batch}, {length}, d_v] to match keys of shape '
                     f'{tuple(keys.shape)}; got shape {tuple(values.shape)}.')
  query_lead = query.shape[:-1]
  if mask is not None:
    allowed = {(batch, length), (*query_lead, length)}
    if tuple(jnp.shape(mask)) not in allowed:
      raise ValueError(f'mask must have shape [B, S] = ({batch}, {length})'
                       + (f' or [B, T, S] = {(*query_lead, length)}' if query.ndim == 3 else '')
                       + f' for query of shape {tuple(query.shape)} and keys of shape {tuple(keys.shape)}; '
                       f'got shape {tuple(jnp.shape(mask))}.')
  for name, value in state.items():
    if tuple(jnp.shape(value)) != (*query_lead, length):
      raise ValueError(f'{name} must have shape {(*query_lead, length)} (query positions x S); '
                       f'got shape {tuple(jnp.shape(value))}.')


def batched_prepare_keys(scorer: str | scoring.Scorer, params: dict, keys: Array) -> Any:
  """The key-side work for a batch: keys [B, S, d_k] -> a cache with leading axis B."""
  scorer = scoring.get(scorer)
  if keys.ndim != 3:
    raise ValueError(f'keys must have shape [B, S, d_k]; got shape {tuple(keys.shape)}.')
  return jax.vmap(scorer.prepare_keys, in_axes=(None, 0))(params, keys)


def batched_score_prepared(scorer: str | scoring.Scorer, params: dict, query: Array, key_cache: Any,
                           **state: Array) -> Array:
  """The scores alone, for weightings that need more than (scores, mask) (local, monotonic):
  query [B, d_q] or [B, T, d_q] against the cache of `batched_prepare_keys` -> scores [B, S] or [B, T, S] float32.
  """
  scorer = scoring.get(scorer)
  _check_state(scorer, state)
  names = tuple(sorted(state))

  def one_query(q, cache, *state_values):
    return scorer.score_prepared(params, q, cache, **dict(zip(names, state_values)))

  per_example = one_query
  if query.ndim == 3:
    per_example = jax.vmap(one_query, in_axes=(0, None) + (0,) * len(names))
  return jax.vmap(per_example)(query, key_cache, *(state[n] for n in names)).astype(jnp.float32)


def batched_attend_prepared(scorer: str | scoring.Scorer, params: dict, query: Array, key_cache: Any,
                            values: Array, mask: Array | None = None, *, weighting: str = 'softmax',
                            **state: Array) -> tuple[Array, Array]:
  """`batched_attend` with the cache from `batched_prepare_keys` in place of keys.

  Returns:
    (context [B, d_v] or [B, T, d_v], weights [B, S] or [B, T, S]).
  """
  scorer = scoring.get(scorer)
  _check_state(scorer, state)
  names = tuple(sorted(state))

  def one_query(q, cache, v, m, *state_values):
    return attend_prepared(scorer, params, q, cache, v, m, weighting=weighting, **dict(zip(names, state_values)))

  per_example = one_query
  state_values = tuple(state[n] for n in names)
  if query.ndim == 3:
    mask_axis = None if mask is None or jnp.ndim(mask) == 2 else 0
    per_example = jax.vmap(one_query, in_axes=(0, None, None, mask_axis) + (0,) * len(names))
  return jax.vmap(per_example)(query, key_cache, values, mask, *state_values)


def batched_attend(scorer: str | scoring.Scorer, params: dict, query: Array, keys: Array, values: Array,
                   mask: Array | None = None, *, weighting: str = 'softmax', **state: Array) -> tuple[Array, Array]:
  """`attend` vmapped over query positions (if any) and the batch.

  Args:
    scorer: registered scorer name or `scoring.Scorer`.
    params: the scorer's parameters, shared by every example.
    query: [B, d_q] (one query per example) or [B, T, d_q] (T query positions per example).
    keys: [B, S, d_k].
    values: [B, S, d_v].
    mask: optional bool [B, S] or [B, T, S], True = attend.
    weighting: 'softmax' or 'sparsemax'.
    **state: per-query scorer state, e.g. prev_weights [B, S] or [B, T, S].

  Returns:
    (context [B, d_v] or [B, T, d_v] in values.dtype, weights [B, S] or [B, T, S] float32).
  """
  check_batched(query, keys, values, mask, state)
  cache = batched_prepare_keys(scorer, params, keys)
  return batched_attend_prepared(scorer, params, query, cache, values, mask, weighting=weighting, **state)


def multi_head_attend(scorer: str | scoring.Scorer, head_params: dict, query: Array, keys: Array, values: Array,
                      mask: Array | None = None, *, weighting: str = 'softmax') -> tuple[Array, Array]:
  """Runs a scorer independently in each head (already projected inputs).

  Args:
    scorer: registered scorer name or `scoring.Scorer` (stateless scorers only).
    head_params: the scorer's parameters with a leading head axis N on every leaf (`{}` for parameter-free).
    query: [B, T, N, h_q].
    keys: [B, S, N, h_k].
    values: [B, S, N, h_v].
    mask: optional bool [B, S] or [B, T, S], True = attend.
    weighting: 'softmax' or 'sparsemax'.

  Returns:
    (context [B, T, N, h_v], weights [B, N, T, S]), the layout of `jax.nn.dot_product_attention`.
  """
  scorer = scoring.get(scorer)
  if scorer.state_names:
    raise ValueError(f'scorer {scorer.name!r} needs state {scorer.state_names} and cannot run per head; '
                     'use a stateless scorer for multi-head attention.')
  if query.ndim != 4 or keys.ndim != 4 or values.ndim != 4:
    raise ValueError('multi-head inputs must be query [B, T, N, h], keys [B, S, N, h], values [B, S, N, h]; got '
                     f'{tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}.')
  if not query.shape[2] == keys.shape[2] == values.shape[2]:
    raise ValueError(f'query, keys and values disagree on the number of heads: {tuple(query.shape)}, '
                     f'{tuple(keys.shape)}, {tuple(values.shape)} (expected [B, T|S, N, h]).')

  def one_head(params, q, k, v):   # q [B, T, h], k [B, S, h], v [B, S, h]
    return batched_attend(scorer, params, q, k, v, mask, weighting=weighting)

  ctx_NBTH, weights_NBTS = jax.vmap(one_head, in_axes=(0, 2, 2, 2))(head_params, query, keys, values)
  return jnp.moveaxis(ctx_NBTH, 0, 2), jnp.moveaxis(weights_NBTS, 0, 1)


FUSED_IMPLEMENTATIONS = ('xla', 'cudnn')


def fused_scaled_dot_attend(query: Array, keys: Array, values: Array, mask: Array | None = None, *,
                            implementation: str = 'xla') -> Array:
  """`multi_head_attend('scaled_dot', {}, ...)`'s context through `jax.nn.dot_product_attention`.

  The attention weights are never materialised for the caller (cuDNN's flash kernel never forms them), so use it
  where only the context is needed: training, Transformer self-attention.

  Args:
    query: [B, T, N, h]; keys: [B, S, N, h]; values: [B, S, N, h].
    mask: optional bool, True = attend. 'xla': [B, S] or [B, T, S]. 'cudnn': a [B, S] padding mask whose True
      entries come first in every row (it is passed as per-example lengths, the form cuDNN takes).
    implementation: 'xla' (any backend) or 'cudnn' (NVIDIA GPU of compute capability >= 8.0, float16/bfloat16
      inputs, head size a multiple of 8 and at most 128, or 256 on Hopper).

  Returns:
    context [B, T, N, h] in values.dtype. As in `multi_head_attend`, a query with no attendable key gets a zero
    context.

  Raises:
    ValueError: unknown implementation, bad shapes, or a request cuDNN cannot serve (the message says why).
  """
  if implementation not in FUSED_IMPLEMENTATIONS:
    raise ValueError(f'Unknown fused implementation {implementation!r}. Valid: {", ".join(FUSED_IMPLEMENTATIONS)}.')
  if query.ndim != 4 or keys.shape != values.shape or keys.ndim != 4 or query.shape[2:] != keys.shape[2:]:
    raise ValueError('fused attention needs query [B, T, N, h], keys and values [B, S, N, h] with the same N and h; '
                     f'got {tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}.')
  batch, length = query.shape[:2]
  source_length = keys.shape[1]
  lengths, dense_mask, has_key = None, None, None
  if implementation == 'cudnn':
    if jax.default_backend() != 'gpu':
      raise ValueError(f"implementation='cudnn' needs an NVIDIA GPU; the JAX backend here is "
                       f"{jax.default_backend()!r}. Use 'xla' (same numbers) or the vmap path.")
    if query.dtype not in (jnp.float16, jnp.bfloat16):
      raise ValueError(f"implementation='cudnn' takes float16 or bfloat16 inputs, not {query.dtype} "
                       "(set the model's dtype to bfloat16).")
    if mask is not None:
      if mask.shape != (batch, source_length):
        raise ValueError(f"implementation='cudnn' takes a [B, S] = [{batch}, {source_length}] padding mask, not "
                         f'{tuple(mask.shape)}.')
      lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)
      has_key = (lengths > 0)[:, None]
  elif mask is not None:
    if mask.shape not in ((batch, source_length), (batch, length, source_length)):
      raise ValueError(f'mask must be [B, S] = [{batch}, {source_length}] or [B, T, S] = [{batch}, {length}, '
                       f'{source_length}]; got {tuple(mask.shape)}.')
    dense_mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None, :, :]     # [B, 1, T|1, S]
    has_key = jnp.any(mask, axis=-1) if mask.ndim == 3 else jnp.any(mask, axis=-1)[:, None]   # [B, T|1]
  context_BTNH = jax.nn.dot_product_attention(query, keys, values, mask=dense_mask, key_value_seq_lengths=lengths,
                                              implementation=implementation)
  if has_key is not None:
    context_BTNH = jnp.where(has_key[:, :, None, None], context_BTNH, jnp.zeros((), context_BTNH.dtype))
  return context_BTNH.astype(values.dtype)
