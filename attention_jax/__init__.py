"""attention_jax: classic attention mechanisms in JAX/Flax.

Layers, bottom up:
  scoring      pure scorers, one query vs. all keys of one example, chosen by name
  weighting    masked softmax / sparsemax (float32, True = attend)
  attention    score -> weights -> context, single example and vmapped batches, multi-head
  modules      Flax modules owning scorer parameters (Attention, MultiHeadAttention)
"""

from attention_jax import attention
from attention_jax import scoring
from attention_jax import weighting
from attention_jax.attention import attend
from attention_jax.attention import attend_prepared
from attention_jax.attention import batched_attend
from attention_jax.attention import context
from attention_jax.modules import Attention
from attention_jax.modules import MultiHeadAttention
from attention_jax.weighting import masked_softmax
from attention_jax.weighting import sparsemax

__all__ = [
    'Attention', 'MultiHeadAttention', 'attend', 'attend_prepared', 'attention', 'batched_attend', 'context',
    'masked_softmax', 'scoring', 'sparsemax', 'weighting',
]
