"""Turning scores into attention weights: masked softmax and masked sparsemax.

Mask convention everywhere in attention_jax: `mask[j] == True` means "attend to position j".
Both functions:
  * compute in float32 whatever the score dtype (bf16/fp16 exponentials lose too much),
    and return float32 weights (float64 inputs stay float64);
  * give masked positions exactly zero weight;
  * give a fully masked row all-zero weights (so the context is a zero vector) with finite values and
    gradients: masked scores are replaced by a finite fill rather than -inf, and the result is multiplied
    by the mask afterwards.
They work on any leading shape: scores [..., S], mask broadcastable to [..., S].
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

# Finite fill for masked scores, applied after the cast to float32 (so it cannot overflow fp16/bf16).
_MASK_FILL = float(jnp.finfo(jnp.float32).min)


def _at_least_f32(x: Array) -> Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_mask(scores: Array, mask: Array | None) -> Array | None:
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f'mask must be boolean (True = attend); got dtype {mask.dtype}.')
  try:
    jnp.broadcast_shapes(mask.shape, scores.shape)
  except ValueError:
    raise ValueError(f'mask of shape {tuple(mask.shape)} does not broadcast to scores of shape '
                     f'{tuple(scores.shape)}; expected [..., S] with S = {scores.shape[-1]}.') from None
  if mask.shape[-1] != scores.shape[-1]:
    raise ValueError(f'mask of shape {tuple(mask.shape)} has {mask.shape[-1]} positions, scores of shape '
                     f'{tuple(scores.shape)} have S = {scores.shape[-1]}.')
  return mask


def masked_softmax(scores: Array, mask: Array | None = None) -> Array:
  """Softmax over the last axis, in float32, with masked positions at exactly zero.

  Args:
    scores: [..., S] any float dtype.
    mask: optional bool [..., S] (broadcastable), True = attend.

  Returns:
    weights [..., S] float32; rows sum to 1, or to 0 when every position is masked.
  """
  mask = _check_mask(scores, mask)
  scores = _at_least_f32(scores)
  if mask is None:
    return jax.nn.softmax(scores, axis=-1)
  filled = jnp.where(mask, scores, _MASK_FILL)
  weights = jax.nn.softmax(filled, axis=-1)
  return jnp.where(mask, weights, 0.0)


def sparsemax(scores: Array, mask: Array | None = None) -> Array:
  """Sparsemax (Martins & Astudillo 2016): the Euclidean projection of the scores onto the simplex.

  p_j = max(z_j - tau, 0), with tau chosen so that sum_j p_j = 1; unlike softmax, many weights are exactly 0.

  Args:
    scores: [..., S] any float dtype.
    mask: optional bool [..., S] (broadcastable), True = attend.

  Returns:
    weights [..., S] float32; rows sum to 1, or to 0 when every position is masked.
  """
  mask = _check_mask(scores, mask)
  z = _at_least_f32(scores)
  if mask is not None:
    mask = jnp.broadcast_to(mask, z.shape)
    # Any score <= max - 1 gets zero weight (tau >= max - 1), so max - 2 is a safe finite fill that keeps the
    # cumulative sums below free of huge magnitudes (which would turn gradients into NaN).
    row_max = jnp.max(jnp.where(mask, z, -jnp.inf), axis=-1, keepdims=True)
    row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    z = jnp.where(mask, z, row_max - 2.0)
  size = z.shape[-1]
  z_sorted = -jnp.sort(-z, axis=-1)                          # descending
  cumulative = jnp.cumsum(z_sorted, axis=-1)
  k = jnp.arange(1, size + 1, dtype=z.dtype)
  in_support = 1.0 + k * z_sorted > cumulative                # a prefix of the sorted scores
  support_size = jnp.sum(in_support, axis=-1, keepdims=True)  # >= 1 always
  support_sum = jnp.take_along_axis(cumulative, support_size.astype(jnp.int32) - 1, axis=-1)
  tau = (support_sum - 1.0) / support_size
  weights = jnp.maximum(z - tau, 0.0)
  if mask is not None:
    weights = jnp.where(mask, weights, 0.0)
  return weights


WEIGHTINGS: dict[str, Callable[[Array, Array | None], Array]] = {
    'softmax': masked_softmax,
    'sparsemax': sparsemax,
}


def get(name: str) -> Callable[[Array, Array | None], Array]:
  """Returns the weighting function `name` ('softmax' or 'sparsemax'); the error lists the valid names."""
  if callable(name):
    return name
  try:
    return WEIGHTINGS[name]
  except (KeyError, TypeError):
    raise ValueError(f'Unknown weighting {name!r}. Valid weightings: {", ".join(sorted(WEIGHTINGS))}.') from None
