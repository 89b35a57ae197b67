"""Copy attention: the pointer-generator's output distribution (See et al. 2017, eq. 8-9), pure jax.numpy.

    log_p [B, (T,) V_ext] = pointer_generator_log_probs(vocab_logits [B, (T,) V], weights [B, (T,) S],
                                                        source_ids [B, S], source_mask [B, S], p_gen [B, (T,)],
                                                        extended_vocab_size=V_ext)

    P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: x_i = w} a_i

P_vocab = softmax(vocab_logits) over the fixed vocabulary (ids < V; zero for the ids V..V_ext-1 of the
extended vocabulary), a the attention weights over the source positions, x_i the source's ids in the extended
vocabulary: ids >= V name the document's own out-of-vocabulary words, which only copying can produce. With a
subword vocabulary shared by source and target every source piece is in the vocabulary, V_ext = V, and copying
moves probability onto the source's own pieces. Padded source positions (mask False) never receive mass.

The result is a normalised log-distribution, so `log_softmax` leaves it unchanged: the cross-entropy, label
smoothing, greedy and beam decoding written for logits apply to it as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

PROBABILITY_FLOOR = 1e-10   # log(P + floor): a word with P = 0 (outside the vocabulary, not in the source) stays finite


def copy_probabilities(weights: Array, source_ids: Array, source_mask: Array, extended_vocab_size: int) -> Array:
  """sum_{i: x_i = w} a_i for every w: weights [B, (T,) S], source_ids [B, S] int, source_mask [B, S] ->
  [B, (T,) V_ext] float32 (a scatter-add of each row's weights onto its source ids)."""
  if weights.shape[0] != source_ids.shape[0] or weights.shape[-1] != source_ids.shape[-1]:
    raise ValueError(f'weights {weights.shape} and source_ids {source_ids.shape} must agree on B and S.')
  masked = jnp.where(source_mask[:, None, :] if weights.ndim == 3 else source_mask, weights.astype(jnp.float32), 0.0)

  def one_example(weights_TS: Array, ids_S: Array) -> Array:
    out = jnp.zeros((*weights_TS.shape[:-1], extended_vocab_size), jnp.float32)
    return out.at[..., ids_S].add(weights_TS)

  return jax.vmap(one_example)(masked, source_ids)


def pointer_generator_probs(vocab_logits: Array, weights: Array, source_ids: Array, source_mask: Array, p_gen: Array,
                            *, extended_vocab_size: int | None = None) -> Array:
  """P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: x_i = w} a_i -> [B, (T,) V_ext] float32 (rows sum to 1).

  Args:
    vocab_logits: [B, (T,) V] scores over the fixed vocabulary.
    weights: [B, (T,) S] attention weights (each row sums to 1 over the real source positions).
    source_ids: [B, S] int, the source in the extended vocabulary (0 <= id < V_ext).
    source_mask: [B, S] bool, True = real source token.
    p_gen: [B, (T,)] in [0, 1], the probability of generating from the vocabulary rather than copying.
    extended_vocab_size: V_ext >= V (default V: every source id is in the vocabulary).
  """
  vocab_size = vocab_logits.shape[-1]
  extended = vocab_size if extended_vocab_size is None else int(extended_vocab_size)
  if extended < vocab_size:
    raise ValueError(f'extended_vocab_size={extended} must be >= the vocabulary size {vocab_size}.')
  vocab_probs = jax.nn.softmax(vocab_logits.astype(jnp.float32), axis=-1)
  if extended > vocab_size:
    vocab_probs = jnp.pad(vocab_probs, [(0, 0)] * (vocab_probs.ndim - 1) + [(0, extended - vocab_size)])
  gate = p_gen.astype(jnp.float32)[..., None]
  return gate * vocab_probs + (1.0 - gate) * copy_probabilities(weights, source_ids, source_mask, extended)


def pointer_generator_log_probs(vocab_logits: Array, weights: Array, source_ids: Array, source_mask: Array,
                                p_gen: Array, *, extended_vocab_size: int | None = None) -> Array:
  """log P(w) of `pointer_generator_probs` (same arguments), floored at log(PROBABILITY_FLOOR): [B, (T,) V_ext]."""
  probs = pointer_generator_probs(vocab_logits, weights, source_ids, source_mask, p_gen,
                                  extended_vocab_size=extended_vocab_size)
  return jnp.log(probs + PROBABILITY_FLOOR)
