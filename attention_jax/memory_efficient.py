"""Memory-lean batched attention: query positions in chunks, each chunk rematerialised in the backward pass.

For scorers with a hidden layer (additive, concat, location_aware) the vmapped form materialises the
tanh(W_q q_t + W_k k_s) tensor for every (t, s) pair: [B, T, S, H] floats, forward and backward. Here the T
query positions are processed `chunk_size` at a time with `lax.map`, and `jax.checkpoint` recomputes a chunk's
activations during the backward pass instead of storing them, so peak memory is O(B * chunk_size * S * H)
instead of O(B * T * S * H). The result equals `attention.batched_attend` (same arithmetic per query).

    context [B, T, d_v], weights [B, T, S] = chunked_batched_attend('additive', params, query [B, T, d_q],
                                                                    keys, values, mask, chunk_size=16)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention_jax import attention

Array = jax.Array


def chunked_batched_attend(scorer, params: dict, query: Array, keys: Array, values: Array, mask: Array | None = None,
                           *, chunk_size: int = 16, weighting: str = 'softmax', **state: Array) -> tuple[Array, Array]:
  """`attention.batched_attend` for query [B, T, d_q], computed chunk_size query positions at a time.

  Args: as `attention.batched_attend` (mask [B, S] or [B, T, S]; state per query [B, T, S]), plus chunk_size.
  Returns: (context [B, T, d_v], weights [B, T, S]).
  """
  if query.ndim != 3:
    raise ValueError(f'chunked_batched_attend needs query [B, T, d_q]; got shape {tuple(query.shape)}.')
  batch, length = query.shape[:2]
  if chunk_size <= 0:
    raise ValueError(f'chunk_size must be positive; got {chunk_size}.')
  cache = attention.batched_prepare_keys(scorer, params, keys)        # key-side work once, shared by all chunks
  chunks = -(-length // chunk_size)
  padded = chunks * chunk_size

  def split(x):   # [B, T, ...] -> [chunks, B, chunk_size, ...], padding T with copies of the last position
    x = jnp.concatenate([x, jnp.repeat(x[:, -1:], padded - length, axis=1)], axis=1) if padded > length else x
    return jnp.moveaxis(x.reshape(batch, chunks, chunk_size, *x.shape[2:]), 1, 0)

  per_query_mask = mask is not None and mask.ndim == 3
  names = tuple(sorted(state))

  @jax.checkpoint
  def one_chunk(inputs):
    q, m, *state_values = inputs
    return attention.batched_attend_prepared(scorer, params, q, cache, values, m if per_query_mask else mask,
                                             weighting=weighting, **dict(zip(names, state_values)))

  mask_chunks = split(mask) if per_query_mask else jnp.zeros((chunks,))
  context, weights = jax.lax.map(one_chunk, (split(query), mask_chunks, *[split(state[n]) for n in names]))
  merge = lambda x: jnp.moveaxis(x, 0, 1).reshape(batch, padded, *x.shape[3:])[:, :length]
  return merge(context), merge(weights)
