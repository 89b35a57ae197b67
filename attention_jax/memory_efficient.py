"""Memory-lean batched attention: query positions in chunks, each chunk rematerialised in the backward pass.

For scorers with a hidden layer (additive, concat, location_aware, coverage: `Scorer.hidden_size`) the vmapped
form materialises the tanh(W_q q_t + W_k k_s) tensor for every (t, s) pair: [B, T, S, H] floats, forward and
backward. Here the T query positions are processed `chunk_size` at a time with `lax.map`, and `jax.checkpoint`
recomputes a chunk's activations during the backward pass instead of storing them, so peak memory is
O(B * chunk_size * S * H) instead of O(B * T * S * H). The result equals `attention.batched_attend` (same
arithmetic per query).

    context [B, T, d_v], weights [B, T, S] = chunked_batched_attend('additive', params, query [B, T, d_q],
                                                                    keys, values, mask, chunk_size=8)
    ... = chunked_batched_attend_prepared(scorer, params, query, key_cache, values, mask)   # keys prepared once
    scores [B, T, S] = chunked_batched_score_prepared(scorer, params, query, key_cache)

When it pays: the hidden layer of the vmapped form is written and read back in full, a chunk's stays small and is
reused. From T * S * H = CHUNK_ELEMENTS (120,000) hidden-layer elements per example, chunks of 8 queries were as
fast or faster for forward + backward on AMD EPYC (1.00-1.32x from 0.13 M to 16.8 M; 2.2-2.3x at 4.2 M and 16.8 M
on Sapphire Rapids) with 1.7-6.8x less compiled memory; below it, at 0.10 M, they were 0.92-0.94x
(`python -m benchmarks.query_chunks`, BENCHMARKS.md section 1). `chunk_size_for` applies that rule on the CPU,
where it was measured, and `modules.Attention` follows it by default (`query_chunks='auto'`); on a GPU or TPU
pass a chunk size to save memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from attention_jax import attention
from attention_jax import scoring

Array = jax.Array
DEFAULT_CHUNK_SIZE = 8
# Hidden-layer elements per example, T * S * H, from which chunk_size_for chunks (BENCHMARKS.md section 1).
CHUNK_ELEMENTS = 120_000


def hidden_layer_elements(scorer: str | scoring.Scorer, params: dict, query_length: int, source_length: int) -> int:
  """T * S * H: the elements of the hidden layer the vmapped form materialises per example (0 for a scorer with
  no hidden layer)."""
  scorer = scoring.get(scorer)
  if scorer.hidden_size is None:
    return 0
  return query_length * source_length * scorer.hidden_size(params)


def chunk_size_for(scorer: str | scoring.Scorer, params: dict, query: Array, source_length: int) -> int | None:
  """DEFAULT_CHUNK_SIZE when chunking query [B, T, d_q] pays, else None (one query [B, d_q], T <=
  DEFAULT_CHUNK_SIZE, a scorer without a hidden layer, a layer of T * S * H < CHUNK_ELEMENTS per example, or a
  default backend other than the CPU).

  CPU only: the threshold is measured on CPUs. On a GPU or TPU the vmapped form is one parallel computation and a
  loop over chunks serialises it, so there chunking is a memory choice, made by passing a chunk size.
  """
  if query.ndim != 3 or query.shape[1] <= DEFAULT_CHUNK_SIZE or jax.default_backend() != 'cpu':
    return None
  elements = hidden_layer_elements(scorer, params, query.shape[1], source_length)
  return DEFAULT_CHUNK_SIZE if elements >= CHUNK_ELEMENTS else None


def _map_query_chunks(fn: Callable[..., Any], per_query: tuple[Array, ...], chunk_size: int) -> Any:
  """fn over chunks of the query positions: per_query arrays [B, T, ...] are cut into [B, chunk_size, ...] pieces,
  the last T mod chunk_size positions into one shorter piece (no padding, so no wasted work); fn(*pieces) -> pytree
  of [B, piece length, ...] is rematerialised in the backward pass, and the results are joined back to [B, T, ...]."""
  if chunk_size <= 0:
    raise ValueError(f'chunk_size must be positive; got {chunk_size}.')
  batch, length = per_query[0].shape[:2]
  chunks, remainder = divmod(length, chunk_size)
  step = jax.checkpoint(lambda pieces: fn(*pieces))
  parts = []
  if chunks:
    whole = tuple(jnp.moveaxis(x[:, :chunks * chunk_size].reshape(batch, chunks, chunk_size, *x.shape[2:]), 1, 0)
                  for x in per_query)                       # [chunks, B, chunk_size, ...]
    mapped = jax.lax.map(step, whole)
    parts.append(jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1).reshape(batch, chunks * chunk_size, *x.shape[3:]),
                              mapped))
  if remainder:
    parts.append(step(tuple(x[:, chunks * chunk_size:] for x in per_query)))
  if not parts:      # no query positions: nothing to chunk
    return fn(*per_query)
  return parts[0] if len(parts) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)


def _check_query(query: Array, function: str) -> None:
  if query.ndim != 3:
    raise ValueError(f'{function} needs query [B, T, d_q]; got shape {tuple(query.shape)}.')


def chunked_batched_score_prepared(scorer: str | scoring.Scorer, params: dict, query: Array, key_cache: Any, *,
                                   chunk_size: int = DEFAULT_CHUNK_SIZE, **state: Array) -> Array:
  """`attention.batched_score_prepared` for query [B, T, d_q] (state per query [B, T, S]), chunk_size query
  positions at a time -> scores [B, T, S] float32."""
  _check_query(query, 'chunked_batched_score_prepared')
  names = tuple(sorted(state))

  def one_chunk(q, *state_values):
    return attention.batched_score_prepared(scorer, params, q, key_cache, **dict(zip(names, state_values)))
  return _map_query_chunks(one_chunk, (query, *(state[n] for n in names)), chunk_size)


def chunked_batched_attend_prepared(scorer: str | scoring.Scorer, params: dict, query: Array, key_cache: Any,
                                    values: Array, mask: Array | None = None, *,
                                    chunk_size: int = DEFAULT_CHUNK_SIZE, weighting: str = 'softmax',
                                    **state: Array) -> tuple[Array, Array]:
  """`attention.batched_attend_prepared` for query [B, T, d_q], chunk_size query positions at a time.

  Args: as `attention.batched_attend_prepared` (mask [B, S] or [B, T, S]; state per query [B, T, S]), plus
    chunk_size.
  Returns: (context [B, T, d_v], weights [B, T, S]).
  """
  _check_query(query, 'chunked_batched_attend_prepared')
  names = tuple(sorted(state))
  per_query_mask = mask is not None and mask.ndim == 3

  def one_chunk(q, *rest):
    m, state_values = (rest[0], rest[1:]) if per_query_mask else (mask, rest)
    return attention.batched_attend_prepared(scorer, params, q, key_cache, values, m, weighting=weighting,
                                             **dict(zip(names, state_values)))
  per_query = (query, *((mask,) if per_query_mask else ()), *(state[n] for n in names))
  return _map_query_chunks(one_chunk, per_query, chunk_size)


def chunked_batched_attend(scorer: str | scoring.Scorer, params: dict, query: Array, keys: Array, values: Array,
                           mask: Array | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                           weighting: str = 'softmax', **state: Array) -> tuple[Array, Array]:
  """`attention.batched_attend` for query [B, T, d_q], computed chunk_size query positions at a time; the key-side
  work is done once, shared by all chunks.

  Args: as `attention.batched_attend` (mask [B, S] or [B, T, S]; state per query [B, T, S]), plus chunk_size.
  Returns: (context [B, T, d_v], weights [B, T, S]).
  """
  _check_query(query, 'chunked_batched_attend')
  attention.check_batched(query, keys, values, mask, state)
  cache = attention.batched_prepare_keys(scorer, params, keys)
  return chunked_batched_attend_prepared(scorer, params, query, cache, values, mask, chunk_size=chunk_size,
                                         weighting=weighting, **state)
