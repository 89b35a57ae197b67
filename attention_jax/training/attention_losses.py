"""Losses on the attention weights of teacher forcing, added to the token cross-entropy (pure JAX).

    weights [B, T, S]  the decoder's attention at every target step (float32)
    target_mask [B, T] True on real target tokens (the loss skips padding steps)

  coverage_loss_sum(weights, target_mask) -> []
      sum_t sum_i min(a_t,i, c_t,i), c_t = sum_{t' < t} a_t' (See et al. 2017, eq. 12): attending again to what
      was already attended costs. c_t excludes the current step (OpenNMT-py's #2013 included it).
  guided_alignment_loss_sum(weights, gold [B, T, S], target_mask) -> ([], [])
      sum over target tokens with gold links of the cross-entropy -sum_i g_t,i log a_t,i, g_t the row of gold
      links normalised to sum 1 (Liu et al. 2016; Garg et al. 2019); returns (sum, number of rows with links).

Both are sums over target tokens like the cross-entropy's, so a training loss adds lambda times them to its
token-loss sum and the step divides everything by the token count.

For attention pooling with r hops (Lin et al. 2017, structured self-attention), weights [B, r, S]:

  hop_redundancy_penalty(weights) -> [B]
      ||A A^T - I||_F^2 per example: hops that attend to the same words, or spread their weight, cost; a
      classification loss adds its coefficient times the sum over examples to the cross-entropy's sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
_LOG_FLOOR = 1e-9      # a weight of exactly 0 (sparse weightings, hard monotonic) costs -log(1e-9), not infinity


def coverage(weights_BTS: Array) -> Array:
  """c_t = sum_{t' < t} a_t', the attention paid to each source position before step t: [B, T, S] -> [B, T, S]."""
  weights = weights_BTS.astype(jnp.float32)
  return jnp.cumsum(weights, axis=1) - weights


def coverage_loss_sum(weights_BTS: Array, target_mask_BT: Array) -> Array:
  """sum over real target steps t and source positions i of min(a_t,i, c_t,i) (See et al. 2017, eq. 12)."""
  weights = weights_BTS.astype(jnp.float32)
  per_step = jnp.sum(jnp.minimum(weights, coverage(weights)), axis=-1)
  return jnp.sum(per_step * target_mask_BT.astype(jnp.float32))


def guided_alignment_loss_sum(weights_BTS: Array, gold_BTS: Array, target_mask_BT: Array) -> tuple[Array, Array]:
  """(sum of -sum_i g_t,i log a_t,i over the real target tokens that have gold links, how many such tokens).

  gold [B, T, S] holds link strengths (1 where target token t and source token i are linked); each row is
  normalised to sum 1, and rows without links are skipped.
  """
  gold = gold_BTS.astype(jnp.float32)
  row_sum = jnp.sum(gold, axis=-1)
  has_links = (row_sum > 0) & target_mask_BT
  distribution = gold / jnp.maximum(row_sum, 1e-9)[..., None]
  cross_entropy = -jnp.sum(distribution * jnp.log(jnp.maximum(weights_BTS.astype(jnp.float32), _LOG_FLOOR)), -1)
  rows = has_links.astype(jnp.float32)
  return jnp.sum(cross_entropy * rows), jnp.sum(rows)


def hop_redundancy_penalty(weights_BRS: Array) -> Array:
  """||A A^T - I||_F^2 of each example's hop weights A [r, S] (Lin et al. 2017, eq. 8): [B, r, S] -> [B]."""
  weights = weights_BRS.astype(jnp.float32)
  gram = jnp.einsum('brs,bqs->brq', weights, weights)
  return jnp.sum(jnp.square(gram - jnp.eye(weights.shape[1], dtype=jnp.float32)), axis=(-2, -1))
