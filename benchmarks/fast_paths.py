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
