"""Text classification with attention pooling (Yang et al. 2016, word-level attention of HAN).

    h_i = BiGRU(x)_i                         encoder states            [B, S, 2H]
    u_i = tanh(W_w h_i + b_w)                attention keys            [B, S, A]
    a   = softmax_i(score(u_w, u_i))         u_w a learned context query [A]; any registered scorer
    s   = sum_i a_i h_i                      sentence vector           [B, 2H]
    logits = W_c dropout(s)                                            [B, C]

With scorer='dot' this is exactly Yang et al.'s exp(u_i^T u_w) / sum_j exp(u_j^T u_w).

    model = AttentionPoolingClassifier(vocab_size=V, num_classes=C, scorer='additive')
    logits [B, C], weights [B, S] = model.apply(variables, tokens [B, S], train=False)
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


class AttentionPoolingClassifier(nn.Module):
  """BiRNN encoder + attention pooling with a learned context query + linear classifier.

  Attributes:
    vocab_size: V (id 0, `pad_id`, is padding).
    num_classes: C.
    scorer, scorer_options, weighting: the attention pooling (see attention_jax.scoring).
    embed_dim, hidden_dim: E, and H per direction.
    attention_dim: A, the size of u_i and of the context query u_w.
    cell_type: 'gru' or 'lstm'.
    dropout_rate: on embeddings and the pooled vector.
  """
  vocab_size: int
  num_classes: int
  scorer: str = 'dot'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  embed_dim: int = 64
  hidden_dim: int = 64
  attention_dim: int = 64
  cell_type: str = 'gru'
  dropout_rate: float = 0.0
  pad_id: int = WORD_PAD_ID

  @nn.compact
  def __call__(self, tokens: Array, *, train: bool = False) -> tuple[Array, Array]:
    """tokens [B, S] int -> (logits [B, C] float32, attention weights [B, S] float32)."""
    mask = tokens != self.pad_id
    embedded = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.Embed(self.vocab_size, self.embed_dim)(tokens))
    states, _ = RNNEncoder(cell_type=self.cell_type, hidden_dim=self.hidden_dim, bidirectional=True,
                           name='encoder')(embedded, mask, train=train)
    keys = jnp.tanh(nn.Dense(self.attention_dim, name='key_layer')(states))
    context_query = self.param('context_query', nn.initializers.normal(1.0 / self.attention_dim ** 0.5),
                               (self.attention_dim,))
    query = jnp.broadcast_to(context_query, (tokens.shape[0], self.attention_dim))
    # A single pooling step: the scorer's declared state (e.g. previous weights) takes its first-step value.
    state = {name: declared.init(mask) for name, declared in scoring.get(self.scorer).state.items()}
    options = scoring.with_source_length(self.scorer, self.scorer_options, tokens.shape[1])
    pooled, weights = Attention(self.scorer, self.weighting, FrozenDict(options), name='pooling')(
        query, keys, states, mask, **state)
    pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    return nn.Dense(self.num_classes, name='classifier')(pooled).astype(jnp.float32), weights
