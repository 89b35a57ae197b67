"""attention_jax: classic attention mechanisms in JAX/Flax.

Layers, bottom up:
  special_tokens    PAD/BOS/EOS/UNK ids, defined once
  score_functions   the scorers' pure per-example functions and initialisers
  scoring           the scorer registry (get / init / names) and what each scorer declares it needs
  weighting         masked softmax / sparsemax (float32, True = attend)
  attention         score -> weights -> context, single example and vmapped batches, multi-head
  memory_efficient  the same attention in chunks of queries
  modules           Flax modules owning scorer parameters (Attention, MultiHeadAttention)
  models            encoders, decoder cells and the models built on them (Seq2Seq, ImageToSequence, classifier)
  decoding          greedy and beam search for any AttentionDecoderModel; `decode` returns host numpy
  metrics           host-side scores: alignment (AER), rouge, translation (BLEU, chrF, exact match)
  visualization     attention heatmaps
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
