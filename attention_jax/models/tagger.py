"""Sequence tagging with self-attention over the sentence (named-entity recognition).

    e_i = [Embed_w(word_i); Embed_c(case_i)]              [B, S, E + E_c]
    h_i = BiLSTM(e)_i                                     [B, S, 2H]
    a_i = weights(score(h_i, h_j)) over the words j       [B, S, S]   a stateless scorer, any weighting
    c_i = sum_j a_ij h_j                                  [B, S, 2H]  what the sentence says about word i
    logits_i = W_o tanh(W_c [h_i; c_i])                   [B, S, L]   (one head, no CRF: tags chosen per word)

attention='none' drops the attention (logits from h_i alone): the BiLSTM baseline it is compared with.

    model = AttentionTagger(vocab_size=V, num_tags=9)
    logits [B, S, L], weights [B, S, S] (or None) = model.apply(variables, words [B, S], cases [B, S], train=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax import scoring
from attention_jax.models.encoders import RNNEncoder
from attention_jax.modules import Attention
from attention_jax.special_tokens import WORD_PAD_ID

Array = jax.Array
ATTENTIONS = ('self', 'none')


def self_attention_scorers() -> list[str]:
  """The registered scorers self-attention can use: those with no decoding state (previous weights, coverage) and
  no fixed number of positions (every query attends over its own sentence at once)."""
  return [name for name in scoring.names()
          if not scoring.get(name).state and scoring.get(name).source_length_option is None]


def check_scorer(name: str) -> None:
  """ValueError naming the scorers self-attention takes unless `name` is one."""
  valid = self_attention_scorers()
  if name not in valid:
    raise ValueError(f'Scorer {name!r} cannot score self-attention over a sentence (it needs a decoding state or a '
                     f'fixed number of positions). Valid scorers: {", ".join(valid)}.')


class AttentionTagger(nn.Module):
  """BiLSTM + self-attention tagger (see the module docstring).

  Attributes:
    vocab_size: V (id 0 is padding). num_cases: the capitalisation feature's size. num_tags: L.
    attention: 'self' | 'none'.
    scorer, scorer_options, weighting: the self-attention (any of self_attention_scorers()).
    embed_dim, case_dim: E, E_c. hidden_dim: H per direction.
    dropout_rate: on the embeddings and on [h_i; c_i].
  """
  vocab_size: int
  num_cases: int
  num_tags: int
  attention: str = 'self'
  scorer: str = 'general'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  embed_dim: int = 100
  case_dim: int = 8
  hidden_dim: int = 128
  dropout_rate: float = 0.3

  def __post_init__(self):
    check_scorer(self.scorer)
    if self.attention not in ATTENTIONS:
      raise ValueError(f'Unknown attention {self.attention!r}. Valid attentions: {", ".join(ATTENTIONS)}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, words: Array, cases: Array, *, train: bool = False) -> tuple[Array, Array | None]:
    mask = words != WORD_PAD_ID
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    embedded = jnp.concatenate([nn.Embed(self.vocab_size, self.embed_dim, name='word_embedding')(words),
                                nn.Embed(self.num_cases, self.case_dim, name='case_embedding')(cases)], axis=-1)
    states, _ = RNNEncoder(cell_type='lstm', hidden_dim=self.hidden_dim, bidirectional=True, name='encoder')(
        dropout(embedded), mask, train=train)
    weights = None
    features = states
    if self.attention == 'self':
      context, weights = Attention(self.scorer, self.weighting, FrozenDict(self.scorer_options), name='self_attention')(
          states, states, states, mask)
      features = jnp.concatenate([states, context], axis=-1)
    hidden = jnp.tanh(nn.Dense(2 * self.hidden_dim, name='combine')(dropout(features)))
    return nn.Dense(self.num_tags, name='output')(hidden).astype(jnp.float32), weights
