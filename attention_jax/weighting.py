"""Turning scores into attention weights: masked softmax, sparsemax and entmax (1.5-entmax exact, alpha-entmax
by bisection).

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

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

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


def _fill_masked(z: Array, mask: Array | None, margin: float) -> tuple[Array, Array | None]:
  """z with masked positions at (row max of the attended scores) - margin, a finite value that gets zero weight."""
  if mask is None:
    return z, None
  mask = jnp.broadcast_to(mask, z.shape)
  row_max = jnp.max(jnp.where(mask, z, -jnp.inf), axis=-1, keepdims=True)
  row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
  return jnp.where(mask, z, row_max - margin), mask


def _entmax_backward(weights: Array, exponent: float, cotangent: Array) -> Array:
  """The closed-form entmax VJP: with s = p^(2 - alpha) on the support (0 elsewhere), J = diag(s) - s s^T / sum(s)
  (Peters et al. 2019, Prop. 1), so J^T g = s * g - s * (s . g) / sum(s)."""
  s = jnp.where(weights > 0, weights ** exponent, 0.0)
  s_dot_g = jnp.sum(s * cotangent, axis=-1, keepdims=True)
  return s * cotangent - s * s_dot_g / jnp.sum(s, axis=-1, keepdims=True)


@jax.custom_vjp
def _entmax15_rows(z: Array) -> Array:
  """1.5-entmax of [..., S] float rows, exact by sorting (Peters et al. 2019, Algorithm 2).

  p_j = [z_j / 2 - tau]_+^2 with tau such that sum_j p_j = 1. For the k largest scores x_(1..k) (x = z / 2),
  tau_k = mean_k - sqrt(max(1/k - (mean of squares_k - mean_k^2), 0)); the support is the largest k with
  tau_k <= x_(k), and tau = tau_k there.
  """
  x = z / 2.0
  x_sorted = -jnp.sort(-x, axis=-1)
  k = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
  mean = jnp.cumsum(x_sorted, axis=-1) / k
  mean_sq = jnp.cumsum(x_sorted ** 2, axis=-1) / k
  delta = (1.0 - k * (mean_sq - mean ** 2)) / k
  tau = mean - jnp.sqrt(jnp.maximum(delta, 0.0))
  support = jnp.sum(tau <= x_sorted, axis=-1, keepdims=True)          # >= 1 (k = 1 always qualifies)
  tau_star = jnp.take_along_axis(tau, support - 1, axis=-1)
  return jnp.maximum(x - tau_star, 0.0) ** 2


def _entmax15_fwd(z):
  weights = _entmax15_rows(z)
  return weights, weights


_entmax15_rows.defvjp(_entmax15_fwd, lambda weights, g: (_entmax_backward(weights, 0.5, g),))


def entmax15(scores: Array, mask: Array | None = None) -> Array:
  """1.5-entmax (Peters, Niculae & Martins 2019): p = [z / 2 - tau]_+^2, sparse like sparsemax but smoother.

  Exact (sort-based) forward; the gradient is the closed form of the Jacobian (custom VJP), not autodiff
  through the sort.

  Args:
    scores: [..., S] any float dtype.
    mask: optional bool [..., S] (broadcastable), True = attend.

  Returns:
    weights [..., S] float32; rows sum to 1, or to 0 when every position is masked (gradients stay finite).
  """
  mask = _check_mask(scores, mask)
  # A score <= max - 2 gets zero weight (tau >= max / 2 - 1), so max - 3 is a safe finite fill.
  z, mask = _fill_masked(_at_least_f32(scores), mask, 3.0)
  weights = _entmax15_rows(z)
  return weights if mask is None else jnp.where(mask, weights, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _entmax_bisect_rows(z: Array, alpha: float, iterations: int) -> Array:
  """alpha-entmax of [..., S] rows by bisection on tau: p_j = [(alpha - 1) z_j - tau]_+^(1 / (alpha - 1)).

  With x = (alpha - 1) z, sum_j p_j is decreasing in tau, >= 1 at tau = max x - 1 and <= 1 at
  tau = max x - S^(1 - alpha); `iterations` halvings of that bracket, then the weights are renormalised.
  """
  x = (alpha - 1.0) * z
  power = 1.0 / (alpha - 1.0)
  row_max = jnp.max(x, axis=-1, keepdims=True)
  low = row_max - 1.0
  high = row_max - float(x.shape[-1]) ** (1.0 - alpha)

  def halve(_, bracket):
    low, high = bracket
    middle = (low + high) / 2.0
    total = jnp.sum(jnp.maximum(x - middle, 0.0) ** power, axis=-1, keepdims=True)
    return jnp.where(total >= 1.0, middle, low), jnp.where(total >= 1.0, high, middle)

  low, high = jax.lax.fori_loop(0, iterations, halve, (low, high))
  weights = jnp.maximum(x - low, 0.0) ** power
  return weights / jnp.sum(weights, axis=-1, keepdims=True)


def _entmax_bisect_fwd(z, alpha, iterations):
  weights = _entmax_bisect_rows(z, alpha, iterations)
  return weights, weights


_entmax_bisect_rows.defvjp(_entmax_bisect_fwd,
                           lambda alpha, iterations, weights, g: (_entmax_backward(weights, 2.0 - alpha, g),))


def entmax_bisect(scores: Array, mask: Array | None = None, alpha: float = 1.5, iterations: int = 50) -> Array:
  """alpha-entmax (Peters, Niculae & Martins 2019) by bisection: alpha -> 1 is softmax, 1.5 is entmax15, 2 is
  sparsemax. The gradient is the closed form of the Jacobian (custom VJP), not autodiff through the bisection.

  Args:
    scores: [..., S] any float dtype.
    mask: optional bool [..., S] (broadcastable), True = attend.
    alpha: > 1 (a Python float).
    iterations: bisection steps (50 reach float32 resolution).

  Returns:
    weights [..., S] float32; rows sum to 1, or to 0 when every position is masked (gradients stay finite).

  Raises:
    ValueError: alpha <= 1 (use masked_softmax) or iterations < 1.
  """
  alpha = float(alpha)
  if not alpha > 1.0:
    raise ValueError(f'entmax_bisect needs alpha > 1 (alpha -> 1 is softmax: use masked_softmax); got {alpha}.')
  if int(iterations) < 1:
    raise ValueError(f'entmax_bisect needs iterations >= 1; got {iterations}.')
  mask = _check_mask(scores, mask)
  # A score <= max - 1 / (alpha - 1) gets zero weight, so 1 more below it is a safe finite fill.
  z, mask = _fill_masked(_at_least_f32(scores), mask, 1.0 / (alpha - 1.0) + 1.0)
  weights = _entmax_bisect_rows(z, alpha, int(iterations))
  return weights if mask is None else jnp.where(mask, weights, 0.0)


def local_weights(scores: Array, mask: Array | None, center, window: int) -> Array:
  """Luong et al. 2015 local attention (section 3.2, eq. 10) for one query: the softmax of the scores restricted
  to the window [center - D, center + D], times the Gaussian exp(-(s - center)^2 / (2 sigma^2)), sigma = D / 2,
  applied after the softmax and not renormalised.

  local-m uses center = t (the target step); local-p uses center = S * sigmoid(v_p^T tanh(W_p h_t)) with S the true
  source length (a real number: the window is every position within D of it).

  Args:
    scores: [S] content scores of any scorer.
    mask: optional bool [S], True = attend (padding False).
    center: scalar (int or float, may be traced) p_t.
    window: D >= 1 (a Python int; Luong et al. use 10).

  Returns:
    weights [S] float32: zero outside the window and on masked positions; they sum to <= 1.

  Raises:
    ValueError: window < 1.
  """
  if int(window) != window or window < 1:
    raise ValueError(f'local attention needs an integer window D >= 1; got {window!r}.')
  z = _at_least_f32(jnp.asarray(scores))
  positions = jnp.arange(z.shape[-1], dtype=z.dtype)
  center = jnp.asarray(center, z.dtype)
  inside = jnp.abs(positions - center) <= window
  keep = inside if mask is None else inside & jnp.asarray(mask)
  sigma = window / 2.0
  gaussian = jnp.exp(-(positions - center) ** 2 / (2.0 * sigma ** 2))
  return masked_softmax(z, keep) * gaussian


def _exclusive_cumprod_safe(x: Array, eps: float) -> Array:
  """prod_{l < i} x_l along the last axis, computed as exp(cumsum(log(clip(x, eps, 1)))) (Raffel et al. 2017's
  safe cumprod), its logarithm floored 7 above that of the smallest normal number: products of many small factors
  never reach 0, so dividing by them later stays finite."""
  logs = jnp.log(jnp.clip(x, eps, 1.0))
  floor = float(np.log(np.finfo(np.dtype(x.dtype)).tiny)) + 7.0
  return jnp.exp(jnp.maximum(jnp.cumsum(logs, axis=-1) - logs, floor))


def monotonic_weights(p_choose: Array, prev_weights: Array, mode: str = 'parallel', eps: float = 1e-10) -> Array:
  """Expected alignment of monotonic attention (Raffel et al. 2017, eq. 9 / 12-14) for one output step:

    a_i = p_i * sum_{k <= i} a_prev_k * prod_{l=k}^{i-1} (1 - p_l)

  'recursive' computes q_i = (1 - p_{i-1}) q_{i-1} + a_prev_i, a_i = p_i q_i with lax.scan; 'parallel' computes
  q_i = C_i * cumsum(a_prev / C)_i with C the exclusive cumulative product of (1 - p) in clipped log space.

  Args:
    p_choose: [..., S] selection probabilities sigmoid(e_i + r) in [0, 1]; set padding positions to 0.
    prev_weights: [..., S] the previous step's weights; one-hot on position 0 at the first step.
    mode: 'parallel' | 'recursive'.
    eps: the clip of the safe cumulative product (parallel mode).

  Returns:
    weights [..., S] float32, summing to <= 1 (the rest is the probability of attending past the end).
  """
  p = _at_least_f32(jnp.asarray(p_choose))
  prev = _at_least_f32(jnp.asarray(prev_weights))
  if p.shape != prev.shape:
    raise ValueError(f'p_choose {tuple(p.shape)} and prev_weights {tuple(prev.shape)} must have the same shape.')
  if mode == 'parallel':
    cumulative = _exclusive_cumprod_safe(1.0 - p, eps)
    return p * cumulative * jnp.cumsum(prev / cumulative, axis=-1)
  if mode == 'recursive':
    def step(carry, inputs):
      q_prev, p_prev = carry
      p_i, prev_i = inputs
      q_i = (1.0 - p_prev) * q_prev + prev_i
      return (q_i, p_i), p_i * q_i
    zeros = jnp.zeros(p.shape[:-1], p.dtype)
    _, weights = jax.lax.scan(step, (zeros, zeros), (jnp.moveaxis(p, -1, 0), jnp.moveaxis(prev, -1, 0)))
    return jnp.moveaxis(weights, 0, -1)
  raise ValueError(f"Unknown monotonic mode {mode!r}. Valid modes: parallel, recursive.")


def hard_monotonic_weights(p_choose: Array, prev_weights: Array, threshold: float = 0.5) -> Array:
  """Test-time monotonic attention (Raffel et al. 2017, section 2.1) for one output step: attend to the first
  position i at or after the previously attended one with p_i > threshold. When none qualifies the weights are
  zero (a zero context), and they stay zero at every later step.

  Args:
    p_choose: [..., S] selection probabilities; padding positions 0.
    prev_weights: [..., S] the previous step's weights: one-hot (one-hot on position 0 at the first step) or all
      zero once the end was passed.
    threshold: the selection threshold (0.5: the sigmoid's decision boundary).

  Returns:
    weights [..., S] float32: one-hot or all zero.
  """
  p = _at_least_f32(jnp.asarray(p_choose))
  prev = jnp.asarray(prev_weights)
  length = p.shape[-1]
  positions = jnp.arange(length)
  start = jnp.where(jnp.any(prev > 0, axis=-1), jnp.argmax(prev, axis=-1), length)        # [...]
  candidates = (positions >= start[..., None]) & (p > threshold)
  chosen = jax.nn.one_hot(jnp.argmax(candidates, axis=-1), length, dtype=p.dtype)
  return chosen * jnp.any(candidates, axis=-1, keepdims=True).astype(p.dtype)


def first_position(mask_BxS: Array) -> Array:
  """[B, S] -> [B, S] float32 one-hot on position 0: monotonic attention's previous weights before the first step."""
  return jnp.zeros(mask_BxS.shape, jnp.float32).at[..., 0].set(1.0)


WEIGHTINGS: dict[str, Callable[[Array, Array | None], Array]] = {
    'softmax': masked_softmax,
    'sparsemax': sparsemax,
    'entmax15': entmax15,
}

# Weightings that need the previous step's weights, so only the step-by-step attention decoders run them
# (config.model.weighting); they are not (scores, mask) functions.
DECODER_WEIGHTINGS = ('monotonic',)


def get(name: str) -> Callable[[Array, Array | None], Array]:
  """Returns the weighting function `name` ('softmax', 'sparsemax' or 'entmax15'); the error lists the valid
  names."""
  if callable(name):
    return name
  if name in DECODER_WEIGHTINGS:
    raise ValueError(f'weighting {name!r} depends on the previous step\'s weights, so only the attention decoders '
                     f'run it (config.model.weighting); single-step attention takes {", ".join(sorted(WEIGHTINGS))}.')
  try:
    return WEIGHTINGS[name]
  except (KeyError, TypeError):
    raise ValueError(f'Unknown weighting {name!r}. Valid weightings: {", ".join(sorted(WEIGHTINGS))} (and, in the '
                     f'attention decoders, {", ".join(DECODER_WEIGHTINGS)}).') from None
