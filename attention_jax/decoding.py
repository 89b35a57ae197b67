"""Greedy and beam-search decoding for `attention_jax.models` sequence models, jit-compiled, with attention.

Works with any Flax model that has `encode(source)`, `initial_state(memory)` and
`decode_step(carry, prev_tokens, memory) -> (carry, logits, weights)`: Seq2Seq and ImageToSequence.

    tokens [B, T], weights [B, T, S] = greedy_decode(model, params, source [B, S], max_length=T)
    tokens [B, T], weights [B, T, S] = beam_search(model, params, source, max_length=T, beam_size=4,
                                                   length_penalty=0.6)
    tokens, weights = decode(model, params, source, max_length=T, beam_size=K)   # either, as host numpy
    tokens [B, n, T], weights, scores [B, n], finished = beam_search_n_best(..., beam_size=K, n=n)

`tokens` hold the output ids up to and including EOS, then PAD; `weights` are the attention weights of the
chosen output at each emitted position (zero after EOS), ready to plot against the source tokens.
Both decoders never emit PAD or BOS. The encoder and the scorer's key-side work run once per source batch.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID

Array = jax.Array
_NEG_INF = -1e9   # finite: -inf - -inf would give NaN in the score arithmetic below


def _forbid_special(scores: Array) -> Array:
  """PAD and BOS can never be emitted: their entries set to _NEG_INF. [..., V] -> [..., V].

  An elementwise select, not two scatters (`.at[].set`): XLA fuses it with what comes before and after, where a
  scatter cut beam search's log-softmax and candidate scores into separate passes over [B * K, V]."""
  token = jax.lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
  return jnp.where((token == PAD_ID) | (token == BOS_ID), jnp.asarray(_NEG_INF, scores.dtype), scores)


def _log_probs(logits: Array) -> Array:
  """log_softmax with PAD and BOS forbidden: [..., V] -> [..., V]."""
  return _forbid_special(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1))


def _allowed_logits(logits: Array) -> Array:
  """The logits with PAD and BOS forbidden: [..., V] -> [..., V] float32. Their argmax is `_log_probs`'s
  (log_softmax subtracts one constant per row) without its exp and sum over V: greedy decoding 7% faster on the
  throughput model (measured), and exact where rounding x - logsumexp(x) would merge two nearly equal logits."""
  return _forbid_special(logits.astype(jnp.float32))


def _chunked(x: Array, chunk: int) -> Array:
  """x [..., N] -> [..., ceil(N / chunk), chunk], padded with -inf after the real entries."""
  pad = -x.shape[-1] % chunk
  if pad:
    x = jnp.concatenate([x, jnp.full((*x.shape[:-1], pad), -jnp.inf, x.dtype)], axis=-1)
  return x.reshape(*x.shape[:-1], -1, chunk)


def first_argmax(x: Array, chunk: int = 32) -> Array:
  """jnp.argmax over the last axis (the first maximal index; the first NaN if there is one): [..., V] -> [...]
  int32, in one pass over x: the maxima of chunks of `chunk` entries (and whether they hold a NaN), then the
  first chunk that holds the row's maximum (its first NaN, if it has one), then the first such entry inside it.
  XLA:CPU's variadic (value, index) argmax reduction took 0.4 ms a step at [64, 4000], more than the attention
  of the step, and a max followed by a min over the maximal indices reads x twice (measured: greedy decoding of
  the throughput model 4-5% faster than with the latter)."""
  chunks = _chunked(x, chunk)                                                      # [..., C, chunk]
  chunk_max = jnp.max(chunks, axis=-1)                       # [..., C]; XLA:CPU's max may drop NaN: counted apart
  chunk_nan = jnp.any(jnp.isnan(chunks), axis=-1)                                  # [..., C]
  row_max = jnp.max(chunk_max, axis=-1, keepdims=True)                             # [..., 1]
  row_nan = jnp.any(chunk_nan, axis=-1, keepdims=True)                             # [..., 1]
  first_of = lambda is_max: jnp.argmin(~is_max, axis=-1).astype(jnp.int32)        # the first True
  first_chunk = first_of(jnp.where(row_nan, chunk_nan, chunk_max == row_max))      # [...]
  inside = jnp.take_along_axis(chunks, first_chunk[..., None, None], axis=-2)[..., 0, :]   # [..., chunk]
  return first_chunk * chunk + first_of(jnp.where(row_nan, jnp.isnan(inside), inside == row_max))


def chunked_top_k(x: Array, k: int, chunk: int = 32) -> tuple[Array, Array]:
  """jax.lax.top_k over the last axis, found among the k chunks of `chunk` entries with the largest maxima:
  x [..., N] -> (values [..., k], indices [..., k] int32), the same values and indices as lax.top_k (ties go
  to the lower index), for x without NaN.

  Exact: each of the k largest entries lies in a chunk whose maximum is at least the k-th largest value, and
  at most k chunks have such a maximum (ties between chunks go to the lower chunk, whose entries all have lower
  indices). XLA:CPU's TopK runtime call costs about 1 ms at [64, 16000] (beam search's candidates of K = 4
  beams over a 4,000-word vocabulary, every step); the chunk maxima are one vectorised reduction, and the two
  TopK calls that remain see 500 and 8 x 32 entries a row. The last axis is padded with -inf to whole chunks
  (after the real entries, so they lose every tie), which needs N >= k.
  """
  n = x.shape[-1]
  if k > n:
    raise ValueError(f'top {k} of {n} entries')
  if -(-n // chunk) <= k:                                   # no more chunks than wanted entries: nothing to skip
    return jax.lax.top_k(x, k)
  chunks = _chunked(x, chunk)                                                       # [..., N / chunk, chunk]
  _, best_chunks = jax.lax.top_k(jnp.max(chunks, axis=-1), k)                       # [..., k]
  best_chunks = jnp.sort(best_chunks, axis=-1)           # chunk order = index order: ties keep the lower index
  candidates = jnp.take_along_axis(chunks, best_chunks[..., None], axis=-2)         # [..., k, chunk]
  values, position = jax.lax.top_k(candidates.reshape(*candidates.shape[:-2], k * chunk), k)
  chunk_of = jnp.take_along_axis(best_chunks, position // chunk, axis=-1)
  return values, (chunk_of * chunk + position % chunk).astype(jnp.int32)


def _start(model: nn.Module, params, source: Array):
  variables = {'params': params}
  # Methods by name, so any model with encode / initial_state / decode_step decodes (e.g. ImageToSequence).
  memory = model.apply(variables, source, method='encode')
  carry = model.apply(variables, memory, method='initial_state')
  step = functools.partial(model.apply, variables, method='decode_step')
  return memory, carry, step


@functools.partial(jax.jit, static_argnames=('model', 'max_length'))
def greedy_decode(model: nn.Module, params, source: Array, max_length: int) -> tuple[Array, Array]:
  """Picks the most likely token at every step.

  Args:
    model: the model (static; a hashable Flax module).
    params: its parameters.
    source: [B, S] int32, PAD-padded.
    max_length: T, the number of output positions.

  Returns:
    (tokens [B, T] int32, weights [B, T, S] float32).
  """
  memory, carry, step = _start(model, params, source)
  batch = source.shape[0]

  def body(state, _):
    carry, prev, finished = state
    carry, logits, weights = step(carry, prev, memory)
    token = first_argmax(_allowed_logits(logits))
    token = jnp.where(finished, PAD_ID, token)
    weights = jnp.where(finished[:, None], 0.0, weights)
    return (carry, token, finished | (token == EOS_ID)), (token, weights)

  init = (carry, jnp.full((batch,), BOS_ID, jnp.int32), jnp.zeros((batch,), bool))
  _, (tokens_TB, weights_TBS) = jax.lax.scan(body, init, None, length=max_length)
  return tokens_TB.T, jnp.swapaxes(weights_TBS, 0, 1)


def length_penalty_factor(length: Array, alpha: float) -> Array:
  """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016); score = log P(Y) / lp(Y)."""
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


_COVERAGE_FLOOR = 1e-6   # a source position never attended costs log(1e-6) instead of -infinity


def coverage_penalty(weights: Array, source_mask: Array, beta: float) -> Array:
  """GNMT coverage penalty cp(X; Y) = beta * sum_i log(min(sum_t a_t,i, 1)) over the real source positions i
  (Wu et al. 2016, eq. 14; <= 0, so it favours hypotheses that attended to every source token).

  Args:
    weights: [..., T, S] a hypothesis's attention at every emitted step (zero after its EOS).
    source_mask: [..., S] bool, True = real source token (broadcastable to weights without the T axis).
    beta: the penalty weight (0 = none).

  Returns:
    [...] float32; add it to log P(Y) / lp(Y).
  """
  total = jnp.minimum(jnp.sum(weights.astype(jnp.float32), axis=-2), 1.0)
  return beta * jnp.sum(jnp.where(source_mask, jnp.log(jnp.maximum(total, _COVERAGE_FLOOR)), 0.0), axis=-1)


def _beam_search_final(model: nn.Module, params, source: Array, max_length: int, beam_size: int,
                       length_penalty: float, coverage_penalty_weight: float):
  """Runs the beam to max_length: (finished {'tokens' [B, K, T], 'weights' [B, K, T, S], 'score' [B, K] best
  first, _NEG_INF where empty}, alive {'tokens', 'weights', 'score' [B, K] penalised as if ending at T})."""
  batch = source.shape[0]
  k = beam_size
  memory, carry, step = _start(model, params, source)
  source_len = memory.mask.shape[-1]          # what the decoder attends over (source tokens, image grid cells)
  source_mask = memory.mask[:, None, :]       # [B, 1, S]
  # Every beam of an example starts from the same encoder memory and state; flatten to [B * K, ...].
  tile = lambda x: jnp.repeat(x, k, axis=0)
  memory, carry = jax.tree.map(tile, memory), jax.tree.map(tile, carry)

  def gather(tree, index_BK):      # select beams: [B * K, ...] with index [B, K'] -> [B * K', ...]
    def one(x):
      x = x.reshape(batch, -1, *x.shape[1:])
      x = jnp.take_along_axis(x, index_BK.reshape(batch, -1, *([1] * (x.ndim - 2))), axis=1)
      return x.reshape(-1, *x.shape[2:])
    return jax.tree.map(one, tree)

  alive = {
      'tokens': jnp.zeros((batch, k, max_length), jnp.int32),
      'weights': jnp.zeros((batch, k, max_length, source_len), jnp.float32),
      # Only beam 0 is live at the start, so the first step does not pick K copies of the same token.
      'log_prob': jnp.tile(jnp.array([0.0] + [_NEG_INF] * (k - 1), jnp.float32), (batch, 1)),
      'last': jnp.full((batch, k), BOS_ID, jnp.int32),
  }
  finished = {
      'tokens': jnp.zeros((batch, k, max_length), jnp.int32),
      'weights': jnp.zeros((batch, k, max_length, source_len), jnp.float32),
      'score': jnp.full((batch, k), _NEG_INF, jnp.float32),
  }
  take = lambda x, idx: jnp.take_along_axis(x, idx.reshape(*idx.shape, *([1] * (x.ndim - 2))), axis=1)

  def body(state, t):
    carry, alive, finished = state
    carry, logits, weights = step(carry, alive['last'].reshape(-1), memory)
    vocab = logits.shape[-1]
    candidates = alive['log_prob'][..., None] + _log_probs(logits).reshape(batch, k, vocab)
    top_log_prob, top_index = chunked_top_k(candidates.reshape(batch, k * vocab), 2 * k)    # [B, 2K]
    beam, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    tokens = take(alive['tokens'], beam).at[:, :, t].set(token)                            # [B, 2K, T]
    step_weights = take(weights.reshape(batch, k, source_len), beam)                       # [B, 2K, S]
    all_weights = take(alive['weights'], beam).at[:, :, t].set(step_weights)               # [B, 2K, T, S]
    is_eos = token == EOS_ID

    # Finished: merge the EOS candidates (length t + 1, penalised) with the finished set, keep the best K.
    eos_score = top_log_prob / length_penalty_factor(t + 1, length_penalty)
    if coverage_penalty_weight:
      eos_score = eos_score + coverage_penalty(all_weights, source_mask, coverage_penalty_weight)
    eos_score = jnp.where(is_eos, eos_score, _NEG_INF)
    merged_score = jnp.concatenate([finished['score'], eos_score], axis=1)
    best_score, best = jax.lax.top_k(merged_score, k)
    merge = lambda old, new: take(jnp.concatenate([old, new], axis=1), best)
    finished = {'tokens': merge(finished['tokens'], tokens), 'weights': merge(finished['weights'], all_weights),
                'score': best_score}

    # Alive: the best K candidates that did not end.
    alive_log_prob, keep = jax.lax.top_k(jnp.where(is_eos, _NEG_INF, top_log_prob), k)
    alive = {'tokens': take(tokens, keep), 'weights': take(all_weights, keep), 'log_prob': alive_log_prob,
             'last': take(token, keep)}
    carry = gather(carry, take(beam, keep))
    return (carry, alive, finished), None

  (_, alive, finished), _ = jax.lax.scan(body, (carry, alive, finished), jnp.arange(max_length))

  alive_score = alive['log_prob'] / length_penalty_factor(jnp.asarray(max_length), length_penalty)
  if coverage_penalty_weight:
    alive_score = alive_score + coverage_penalty(alive['weights'], source_mask, coverage_penalty_weight)
  return finished, {'tokens': alive['tokens'], 'weights': alive['weights'], 'score': alive_score}


def beam_search(model: nn.Module, params, source: Array, max_length: int, beam_size: int = 4,
                length_penalty: float = 0.6, coverage_penalty_weight: float = 0.0) -> tuple[Array, Array]:
  """Batched beam search with the GNMT length and coverage penalties.

  Keeps `beam_size` alive hypotheses (ranked by log-probability) and the `beam_size` best finished ones
  (ranked by log P / lp + cp, cp the coverage penalty of their attention, see `coverage_penalty`). At each step
  the 2K best extensions are scored so that K alive ones remain
  even when up to K of them end in EOS. The result is the best finished hypothesis, or the best alive
  one if none finished within max_length.

  Args:
    model: the model (static; a hashable Flax module).
    params: its parameters.
    source: [B, S] int32, PAD-padded.
    max_length: T, output positions.
    beam_size: K.
    length_penalty: alpha (0 = plain log-probability).
    coverage_penalty_weight: beta (0 = none).

  Returns:
    (tokens [B, T] int32, weights [B, T, S] float32) of the chosen hypothesis per example.
  """
  # The first of the K best: one compiled program serves both (evaluation, then the n-best of the explorer).
  tokens, weights, _, _ = beam_search_n_best(model, params, source, max_length=max_length, beam_size=beam_size,
                                             n=beam_size, length_penalty=length_penalty,
                                             coverage_penalty_weight=coverage_penalty_weight)
  return tokens[:, 0], weights[:, 0]


def _n_best(finished: dict, alive: dict, n: int) -> tuple[Array, Array, Array, Array]:
  """The n best hypotheses: the finished ones best first, then, when fewer than n finished, the best alive ones.

  Returns:
    (tokens [B, n, T], weights [B, n, T, S], scores [B, n], finished [B, n] bool).
  """
  batch, k = finished['score'].shape
  finished_count = jnp.sum(finished['score'] > _NEG_INF / 2, axis=1, keepdims=True)           # [B, 1]
  alive_order = jnp.argsort(-alive['score'], axis=1)                                           # [B, K]
  rank = jnp.arange(n)[None, :]                                                                # [1, n]
  from_alive = jnp.take_along_axis(alive_order, jnp.clip(rank - finished_count, 0, k - 1), axis=1)
  index = jnp.where(rank < finished_count, rank, k + from_alive)                               # into [finished; alive]
  take = lambda x, idx: jnp.take_along_axis(x, idx.reshape(*idx.shape, *([1] * (x.ndim - 2))), axis=1)
  both = lambda key: jnp.concatenate([finished[key], alive[key]], axis=1)
  return (take(both('tokens'), index), take(both('weights'), index), take(both('score'), index),
          jnp.broadcast_to(rank < finished_count, (batch, n)))


@functools.partial(jax.jit, static_argnames=('model', 'max_length', 'beam_size', 'n', 'coverage_penalty_weight'))
def beam_search_n_best(model: nn.Module, params, source: Array, max_length: int, beam_size: int = 4, n: int = 4,
                       length_penalty: float = 0.6,
                       coverage_penalty_weight: float = 0.0) -> tuple[Array, Array, Array, Array]:
  """The n best hypotheses of `beam_search` (n <= beam_size), best first; hypothesis 0 is beam_search's result.

  Finished hypotheses come first, ranked by their score log P / lp + cp; when fewer than n finished within
  max_length the rest are the best alive ones, scored as if they ended at max_length.

  Returns:
    (tokens [B, n, T] int32, weights [B, n, T, S] float32, scores [B, n] float32, finished [B, n] bool).
  """
  if not 1 <= n <= beam_size:
    raise ValueError(f'n={n} best hypotheses need 1 <= n <= beam_size={beam_size}.')
  return _n_best(*_beam_search_final(model, params, source, max_length, beam_size, length_penalty,
                                     coverage_penalty_weight), n)


@functools.partial(jax.jit, static_argnames=('model',))
def sequence_log_prob(model: nn.Module, params, source: Array, target_out: Array) -> Array:
  """log P(target | source) under teacher forcing with PAD/BOS forbidden as in decoding.

  Args:
    source: [B, S]; target_out: [B, T] ids ending in EOS then PAD.

  Returns:
    [B] float32 sums over the non-PAD positions.
  """
  target_in = jnp.concatenate([jnp.full_like(target_out[:, :1], BOS_ID), target_out[:, :-1]], axis=1)
  target_in = jnp.where(target_in == EOS_ID, PAD_ID, target_in)
  logits, _ = model.apply({'params': params}, source, target_in)
  token_log_prob = jnp.take_along_axis(_log_probs(logits), target_out[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(target_out != PAD_ID, token_log_prob, 0.0), axis=-1)


def decode(model: nn.Module, params, source_BxS, *, max_length: int, beam_size: int = 1,
           length_penalty: float = 0.6, coverage_penalty: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """Greedy decoding (beam_size <= 1) or beam search, with the results fetched to the host.

  Args:
    model: the model (a hashable Flax module with encode / initial_state / decode_step).
    params: its parameters.
    source_BxS: [B, S] int source ids, PAD-padded (numpy or jax); for ImageToSequence, the images.
    max_length: T, the number of output positions.
    beam_size: K; greedy when K <= 1.
    length_penalty: the GNMT alpha of beam search (unused by greedy decoding).
    coverage_penalty: the GNMT beta of beam search (unused by greedy decoding).

  Returns:
    (tokens [B, T] np.int32, weights [B, T, S] np.float32): output ids up to and including EOS, then PAD, and
    the attention weights of each emitted position (zero after EOS).
  """
  source_BxS = jnp.asarray(source_BxS)
  if beam_size > 1:
    tokens, weights = beam_search(model, params, source_BxS, max_length=int(max_length), beam_size=int(beam_size),
                                  length_penalty=float(length_penalty),
                                  coverage_penalty_weight=float(coverage_penalty))
  else:
    tokens, weights = greedy_decode(model, params, source_BxS, max_length=int(max_length))
  return np.asarray(tokens, np.int32), np.asarray(weights, np.float32)
