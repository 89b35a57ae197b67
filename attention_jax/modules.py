"""Flax (linen) attention modules that own scorer parameters and call the pure functions.

    attn = Attention(scorer='additive', scorer_options={'hidden_dim': 64})
    variables = attn.init(rng, query, keys, values, mask)
    context, weights = attn.apply(variables, query, keys, values, mask)
        query [B, d_q] or [B, T, d_q], keys [B, S, d_k], values [B, S, d_v], mask [B, S] (True = attend)
        -> context [B, d_v] or [B, T, d_v], weights [B, S] or [B, T, S]

The scorer's parameters live under the module's 'scorer' entry with the keys documented in
`attention_jax.scoring` (e.g. params['scorer']['W_q']). Decoders split the key-side work out:

    prepared = attn.prepare_keys(keys, query_dim=d_q)            # once per source batch
    context, weights = attn.attend_prepared(query_t, prepared, values, mask)   # each step
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax import attention
from attention_jax import memory_efficient
from attention_jax import scoring
from attention_jax import weighting as weighting_lib

Array = jax.Array
MULTI_HEAD_IMPLEMENTATIONS = ('vmap',) + attention.FUSED_IMPLEMENTATIONS


@flax.struct.dataclass
class PreparedKeys:
  """The batched key-side work of a scorer (`cache`, leading axis B) and the key size and number of source
  positions S it was made from."""
  cache: Any
  key_dim: int = flax.struct.field(pytree_node=False)
  source_length: int = flax.struct.field(pytree_node=False)


class Attention(nn.Module):
  """Single-head attention with any registered scorer.

  Attributes:
    scorer: registered scorer name (see `attention_jax.scoring.names()`).
    weighting: 'softmax' or 'sparsemax'.
    scorer_options: keyword options for `scoring.init` (e.g. {'hidden_dim': 64} for additive).
    query_chunks: how T query positions ([B, T, d_q] queries) are scored against the S keys. 'auto' (default):
      on the CPU, in chunks of `memory_efficient.DEFAULT_CHUNK_SIZE` positions when T is larger than that and the
      scorer's hidden layer would hold T * S * H >= `memory_efficient.CHUNK_ELEMENTS` elements per example (the
      tanh-MLP scorers on long inputs, where chunks are faster and need a fraction of the memory), else all at
      once; on a GPU or TPU all at once (the rule is measured on CPUs); 'off': all at once; a positive int: chunks
      of that many positions (to save memory anywhere). Same results either way; the parameters do not depend
      on it.
  """
  scorer: str = 'additive'
  weighting: str = 'softmax'
  scorer_options: Mapping[str, Any] = FrozenDict()
  query_chunks: str | int = 'auto'

  def __post_init__(self):
    scoring.get(self.scorer)            # fail at construction, listing the valid names
    weighting_lib.get(self.weighting)
    chunks = self.query_chunks
    if not (chunks in ('auto', 'off') or (isinstance(chunks, int) and not isinstance(chunks, bool) and chunks > 0)):
      raise ValueError(f"query_chunks must be 'auto', 'off' or a positive number of query positions; got {chunks!r}.")
    super().__post_init__()

  def _chunk_size(self, params: dict, query: Array, source_length: int) -> int | None:
    """The number of query positions per chunk for this call, or None to score them all at once."""
    if query.ndim != 3 or self.query_chunks == 'off':
      return None
    if self.query_chunks == 'auto':
      return memory_efficient.chunk_size_for(self.scorer, params, query, source_length)
    return self.query_chunks

  @nn.compact
  def scorer_params(self, query_dim: int, key_dim: int) -> dict:
    """The scorer's parameters (created on first use for these dims)."""
    return self.param('scorer', lambda rng: scoring.init(self.scorer, rng, query_dim, key_dim,
                                                         **dict(self.scorer_options)))

  def prepare_keys(self, keys: Array, *, query_dim: int) -> PreparedKeys:
    """keys [B, S, d_k] -> PreparedKeys (the query-independent work, done once per source batch)."""
    params = self.scorer_params(query_dim, keys.shape[-1])
    return PreparedKeys(attention.batched_prepare_keys(self.scorer, params, keys), keys.shape[-1], keys.shape[-2])

  def score_prepared(self, query: Array, prepared: PreparedKeys, **state: Array) -> Array:
    """query [B, d_q] or [B, T, d_q] against prepared keys -> scores [B, (T,) S] float32 (no weighting)."""
    params = self.scorer_params(query.shape[-1], prepared.key_dim)
    chunk_size = self._chunk_size(params, query, prepared.source_length)
    if chunk_size:
      return memory_efficient.chunked_batched_score_prepared(self.scorer, params, query, prepared.cache,
                                                             chunk_size=chunk_size, **state)
    return attention.batched_score_prepared(self.scorer, params, query, prepared.cache, **state)

  def attend_prepared(self, query: Array, prepared: PreparedKeys, values: Array, mask: Array | None = None,
                      **state: Array) -> tuple[Array, Array]:
    """query [B, d_q] or [B, T, d_q] against prepared keys -> (context [B, (T,) d_v], weights [B, (T,) S])."""
    params = self.scorer_params(query.shape[-1], prepared.key_dim)
    chunk_size = self._chunk_size(params, query, prepared.source_length)
    if chunk_size:
      return memory_efficient.chunked_batched_attend_prepared(self.scorer, params, query, prepared.cache, values,
                                                              mask, chunk_size=chunk_size, weighting=self.weighting,
                                                              **state)
    return attention.batched_attend_prepared(self.scorer, params, query, prepared.cache, values, mask,
                                             weighting=self.weighting, **state)

  def __call__(self, query: Array, keys: Array, values: Array, mask: Array | None = None,
               **state: Array) -> tuple[Array, Array]:
    """Returns (context [B, d_v] or [B, T, d_v], weights [B, S] or [B, T, S] float32)."""
    params = self.scorer_params(query.shape[-1], keys.shape[-1])
    chunk_size = self._chunk_size(params, query, keys.shape[-2])
    if chunk_size:
      return memory_efficient.chunked_batched_attend(self.scorer, params, query, keys, values, mask,
                                                     chunk_size=chunk_size, weighting=self.weighting, **state)
    return attention.batched_attend(self.scorer, params, query, keys, values, mask, weighting=self.weighting,
                                    **state)


class MultiHeadAttention(nn.Module):
  """Multi-head attention running any stateless registered scorer independently in every head.

  inputs_q [B, T, D_q] and inputs_kv [B, S, D_kv] are projected to N heads of size h = qkv_features // N,
  each head scores with its own scorer parameters (stacked on a leading head axis), and the heads' contexts
  are projected back to out_features. With scorer='scaled_dot' this is the standard Transformer attention
  and matches `jax.nn.dot_product_attention` on the projected heads.

  Attributes:
    num_heads: N.
    scorer: registered stateless scorer name.
    qkv_features: total projected size (default: D_q); must be divisible by num_heads.
    out_features: output size (default: D_q).
    weighting: 'softmax' or 'sparsemax'.
    scorer_options: keyword options for `scoring.init`, per head.
    use_bias: biases in the q/k/v/output projections.
    dtype: computation dtype of the projections (the weighting is float32 regardless).
    implementation: 'vmap' (the scorer vmapped over heads, batch and queries; any stateless scorer; returns the
      weights) or, for scorer='scaled_dot' with softmax only, 'xla' / 'cudnn': `jax.nn.dot_product_attention`
      (cuDNN's fused kernel on NVIDIA GPUs with bfloat16), which returns no weights (None). Same parameters.
  """
  num_heads: int
  scorer: str = 'scaled_dot'
  qkv_features: int | None = None
  out_features: int | None = None
  weighting: str = 'softmax'
  scorer_options: Mapping[str, Any] = FrozenDict()
  use_bias: bool = True
  dtype: Any = jnp.float32
  implementation: str = 'vmap'

  def __post_init__(self):
    if self.implementation not in MULTI_HEAD_IMPLEMENTATIONS:
      raise ValueError(f'Unknown implementation {self.implementation!r}. Valid implementations: '
                       f'{", ".join(MULTI_HEAD_IMPLEMENTATIONS)}.')
    if self.implementation != 'vmap' and (self.scorer != 'scaled_dot' or self.weighting != 'softmax'):
      raise ValueError(f"implementation={self.implementation!r} is jax.nn.dot_product_attention: it needs "
                       f"scorer='scaled_dot' and weighting='softmax', not {self.scorer!r} / {self.weighting!r}; "
                       "use implementation='vmap' for any other scorer.")
    if scoring.get(self.scorer).state_names:
      raise ValueError(f'scorer {self.scorer!r} needs decoding state and cannot be used per head; stateless '
                       f'scorers: {", ".join(n for n in scoring.names() if not scoring.get(n).state_names)}.')
    weighting_lib.get(self.weighting)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None = None) -> tuple[Array, Array]:
    """Returns (output [B, T, out_features], weights [B, N, T, S] float32, or None for 'xla' / 'cudnn')."""
    features = self.qkv_features or inputs_q.shape[-1]
    if features % self.num_heads:
      raise ValueError(f'qkv_features={features} is not divisible by num_heads={self.num_heads}.')
    head_dim = features // self.num_heads
    project = lambda name: nn.DenseGeneral((self.num_heads, head_dim), use_bias=self.use_bias, dtype=self.dtype,
                                           name=name)
    query_BTNH = project('query')(inputs_q)
    key_BSNH = project('key')(inputs_kv)
    value_BSNH = project('value')(inputs_kv)

    def init_heads(rng):
      return jax.vmap(lambda r: scoring.init(self.scorer, r, head_dim, head_dim, **dict(self.scorer_options)))(
          jax.random.split(rng, self.num_heads))

    head_params = self.param('scorer', init_heads)
    if self.implementation == 'vmap':
      context_BTNH, weights_BNTS = attention.multi_head_attend(
          self.scorer, head_params, query_BTNH, key_BSNH, value_BSNH, mask, weighting=self.weighting)
    else:
      context_BTNH, weights_BNTS = attention.fused_scaled_dot_attend(
          query_BTNH, key_BSNH, value_BSNH, mask, implementation=self.implementation), None
    out = nn.DenseGeneral(self.out_features or inputs_q.shape[-1], axis=(-2, -1), use_bias=self.use_bias,
                          dtype=self.dtype, name='out')(context_BTNH)
    return out, weights_BNTS

