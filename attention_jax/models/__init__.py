"""Encoder-attention-decoder models (see seq2seq.py for the calling convention)."""

from attention_jax.models.attention_decoder import AttentionDecoderModel
from attention_jax.models.decoders import DECODERS
from attention_jax.models.decoders import Memory
from attention_jax.models.encoders import ENCODERS
from attention_jax.models.seq2seq import MODEL_FIELDS
from attention_jax.models.seq2seq import Seq2Seq
from attention_jax.models.seq2seq import build_model

__all__ = ['AttentionDecoderModel', 'DECODERS', 'ENCODERS', 'MODEL_FIELDS', 'Memory', 'Seq2Seq', 'build_model']
