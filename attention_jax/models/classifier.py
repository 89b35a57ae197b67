"""Text classification with attention pooling: one learned query (Yang et al. 2016, word-level attention of HAN) or
r of them (Lin et al. 2017, structured self-attention).

pooling='context_query' (Yang et al.):

    h_i = BiGRU(x)_i                         encoder states            [B, S, 2H]
    u_i = tanh(W_w h_i + b_w)                attention keys            [B, S, A]
    a   = softmax_i(score(u_w, u_i))         u_w a learned context query [A]; any registered scorer
    s   = sum_i a_i h_i                      sentence vector           [B, 2H]
    logits = W_c dropout(s)                                            [B, C]

With scorer='dot' this is exactly Yang et al.'s exp(u_i^T u_w) / sum_j exp(u_j^T u_w).

pooling='structured' (Lin et al.), r = num_hops:

    u_i = tanh(W_s1 h_i)                     keys, no bias             [B, S, A]   (A = d_a)
    A   = softmax_i(score(w_k, u_i))         w_k the k-th row of W_s2  [B, r, S]   (dot: A = softmax(W_s2 tanh(W_s1 H^T)))
    M   = A H                                one vector per hop        [B, r, 2H]
    logits = W_c dropout(flatten(M))                                   [B, C]

Its penalty ||A A^T - I||_F^2 (attention_jax.training.attention_losses.hop_redundancy_penalty) is added by the
training loss with coefficient config.train.hop_penalty_weight.

    model = AttentionPoolingClassifier(vocab_size=V, num_classes=C, scorer='additive')
    logits [B, C], weights [B, S] = model.apply(variables, tokens [B, S], train=False)
    model = AttentionPoolingClassifier(vocab_size=V, num_classes=C, pooling='structured', num_hops=4)
    logits [B, C], weights [B, 4, S] = model.apply(variables, tokens [B, S], train=False)
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
POOLINGS = ('context_query', 'structured')


class AttentionPoolingClassifier(nn.Module):
  """BiRNN encoder + attention pooling with learned queries + linear classifier.

  Attributes:
    vocab_size: V (id 0, `pad_id`, is padding).
    num_classes: C.
    scorer, scorer_options, weighting: the attention pooling (see attention_jax.scoring).
    pooling: 'context_query' (one query, keys with a bias; Yang et al.) or 'structured' (num_hops queries, keys
      without bias, the hops' vectors concatenated; Lin et al.).
    num_hops: r, the number of queries of 'structured' pooling (must be 1 for 'context_query').
    embed_dim, hidden_dim: E, and H per direction.
    attention_dim: A, the size of the keys u_i and of each query.
    cell_type: 'gru' or 'lstm'.
    dropout_rate: on embeddings and the pooled vector.
  """
  vocab_size: int
  num_classes: int
  scorer: str = 'dot'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  pooling: str = 'context_query'
  num_hops: int = 1
  embed_dim: int = 64
  hidden_dim: int = 64
  attention_dim: int = 64
  cell_type: str = 'gru'
  dropout_rate: float = 0.0
  pad_id: int = WORD_PAD_ID

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f'Unknown pooling {self.pooling!r}. Valid poolings: {", ".join(POOLINGS)}.')
    if isinstance(self.num_hops, bool) or not isinstance(self.num_hops, int) or self.num_hops < 1:
      raise ValueError(f'num_hops={self.num_hops!r} must be an integer >= 1.')
    if self.pooling == 'context_query' and self.num_hops != 1:
      raise ValueError(f'num_hops={self.num_hops} needs pooling=\'structured\'; \'context_query\' pooling has one '
                       'query (num_hops=1).')
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: Array, *, train: bool = False) -> tuple[Array, Array]:
    """tokens [B, S] int -> (logits [B, C] float32, attention weights float32: [B, S] for 'context_query',
    [B, r, S] for 'structured')."""
    mask = tokens != self.pad_id
    embedded = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.Embed(self.vocab_size, self.embed_dim)(tokens))
    states, _ = RNNEncoder(cell_type=self.cell_type, hidden_dim=self.hidden_dim, bidirectional=True,
                           name='encoder')(embedded, mask, train=train)
    structured = self.pooling == 'structured'
    keys = jnp.tanh(nn.Dense(self.attention_dim, use_bias=not structured, name='key_layer')(states))
    query_shape = (self.num_hops, self.attention_dim) if structured else (self.attention_dim,)
    context_query = self.param('context_query', nn.initializers.normal(1.0 / self.attention_dim ** 0.5),
                               query_shape)
    query = jnp.broadcast_to(context_query, (tokens.shape[0],) + query_shape)
    # A single pooling step: the scorer's declared state (e.g. previous weights) takes its first-step value,
    # the same for every hop.
    state = {name: declared.init(mask) for name, declared in scoring.get(self.scorer).state.items()}
    if structured:
      state = {name: jnp.broadcast_to(value[:, None], (value.shape[0], self.num_hops) + value.shape[1:])
               for name, value in state.items()}
    options = scoring.with_source_length(self.scorer, self.scorer_options, tokens.shape[1])
    pooled, weights = Attention(self.scorer, self.weighting, FrozenDict(options), name='pooling')(
        query, keys, states, mask, **state)
    pooled = pooled.reshape(pooled.shape[0], -1)        # structured: the r hop vectors side by side [B, r * 2H]
    pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    return nn.Dense(self.num_classes, name='classifier')(pooled).astype(jnp.float32), weights
