"""The encoder-attention-decoder translation model.

    model = build_model(config.model, source_vocab_size=V_s, target_vocab_size=V_t, max_source_length=S)
    logits [B, T, V_t], weights [B, T, S] = model.apply({'params': p}, source [B, S], target_in [B, T],
                                                        train=False)            # teacher forcing

Step-by-step decoding (used by `attention_jax.decoding`; shared with every `AttentionDecoderModel`):

    memory = model.apply(v, source, method=Seq2Seq.encode)                  # encoder + key-side work, once
    carry = model.apply(v, memory, method=Seq2Seq.initial_state)
    carry, logits [B, V_t], weights [B, S] = model.apply(v, carry, prev_tokens [B], memory,
                                                         method=Seq2Seq.decode_step)

Token id 0 is padding (`pad_id`); masks come from it. Logits are float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from attention_jax import scoring
from attention_jax.models.attention_decoder import AttentionDecoderModel
from attention_jax.models.decoders import DECODERS
from attention_jax.models.decoders import check_attention_choices
from attention_jax.models.decoders import Memory
from attention_jax.models.encoders import ENCODERS
from attention_jax.models.encoders import make_encoder
from attention_jax.modules import MULTI_HEAD_IMPLEMENTATIONS
from attention_jax.special_tokens import PAD_ID

Array = jax.Array


class Seq2Seq(AttentionDecoderModel):
  """Embeddings -> encoder -> attention decoder -> vocabulary logits.

  Attributes:
    source_vocab_size, target_vocab_size: vocabulary sizes (id 0 = padding).
    encoder: 'gru' | 'lstm' | 'bigru' | 'bilstm' | 'transformer'.
    decoder: 'bahdanau' | 'luong' | 'none' (no-attention baseline).
    decoder_cell: 'gru' | 'lstm'.
    scorer, scorer_options, weighting: the attention (see attention_jax.scoring / weighting); weighting may also
      be 'monotonic' (Raffel et al. 2017; see attention_jax.models.decoders).
    locality: 'global' | 'local_m' | 'local_p' (Luong et al. 2015 local attention), local_window: its D.
    monotonic_noise, monotonic_bias_init: weighting='monotonic' only: the std of the pre-sigmoid training noise and
      the initial value of the energy bias r.
    embed_dim: E, both embeddings.
    hidden_dim: H, encoder per-direction size and decoder size (Transformer width).
    encoder_layers: stacked encoder layers.
    num_heads, mlp_dim: Transformer encoder only.
    transformer_attention: Transformer encoder only: 'vmap' (the scorer path), or 'xla' / 'cudnn' for
      `jax.nn.dot_product_attention` (cuDNN's fused kernel needs an NVIDIA GPU and dtype bfloat16).
    input_feeding: Luong only: feed h~_{t-1} into the next step.
    copy_attention: Bahdanau only: the pointer-generator (See et al. 2017), which copies source tokens by their
      attention weights; needs one vocabulary for source and target. The model then outputs log-probabilities.
    dropout_rate: on embeddings, between encoder layers and before the output layer.
    pad_id: padding token id.
    dtype: computation dtype ('float32' or 'bfloat16' mixed precision: parameters, attention weights and
      logits stay float32).
  """
  source_vocab_size: int
  target_vocab_size: int
  encoder: str = 'bigru'
  decoder: str = 'bahdanau'
  decoder_cell: str = 'gru'
  scorer: str = 'additive'
  scorer_options: Mapping[str, Any] = FrozenDict()
  weighting: str = 'softmax'
  locality: str = 'global'
  local_window: int = 10
  monotonic_noise: float = 1.0
  monotonic_bias_init: float = -4.0
  embed_dim: int = 64
  hidden_dim: int = 128
  encoder_layers: int = 1
  num_heads: int = 4
  mlp_dim: int = 256
  transformer_attention: str = 'vmap'
  input_feeding: bool = True
  copy_attention: bool = False
  dropout_rate: float = 0.0
  pad_id: int = PAD_ID
  dtype: Any = jnp.float32

  def setup(self):
    self.source_embed = nn.Embed(self.source_vocab_size, self.embed_dim, dtype=self.dtype)
    self.target_embed = nn.Embed(self.target_vocab_size, self.embed_dim, dtype=self.dtype)
    self.source_encoder = make_encoder(self.encoder, hidden_dim=self.hidden_dim, num_layers=self.encoder_layers,
                                       num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                       dropout_rate=self.dropout_rate, dtype=self.dtype,
                                       attention_implementation=self.transformer_attention)
    options = dict(vocab_size=self.target_vocab_size, hidden_dim=self.hidden_dim, cell_type=self.decoder_cell,
                   scorer=self.scorer, weighting=self.weighting, scorer_options=self.scorer_options,
                   locality=self.locality, local_window=self.local_window, monotonic_noise=self.monotonic_noise,
                   monotonic_bias_init=self.monotonic_bias_init, dropout_rate=self.dropout_rate, dtype=self.dtype)
    if self.decoder == 'luong':
      options['input_feeding'] = self.input_feeding
    if self.copy_attention:
      options['copy_attention'] = True
    self.cell = DECODERS[self.decoder](**options)
    self.dropout = nn.Dropout(self.dropout_rate)

  def encode(self, source: Array, *, train: bool = False) -> Memory:
    """source [B, S] int -> Memory (encoder states, mask, summary and the scorer's key-side work)."""
    mask = source != self.pad_id
    embedded = self.dropout(self.source_embed(source), deterministic=not train)
    encoded, summary = self.source_encoder(embedded, mask, train=train)
    memory = self.cell.prepare_memory(encoded, mask, summary)
    return memory.replace(source_ids=source) if self.copy_attention else memory


# The fields a config.model sets: every Seq2Seq field except those the data decides (vocabulary sizes; the
# padding id, from attention_jax.special_tokens) and Flax's own (parent, name).
_FIELDS_NOT_CONFIGURED = ('source_vocab_size', 'target_vocab_size', 'pad_id', 'parent', 'name')
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(Seq2Seq) if f.name not in _FIELDS_NOT_CONFIGURED)


def build_model(model_config: Mapping[str, Any], *, source_vocab_size: int, target_vocab_size: int,
                max_source_length: int) -> Seq2Seq:
  """A Seq2Seq from a config.model (a ConfigDict or dict with the MODEL_FIELDS keys), validated.

  A scorer that declares a `source_length_option` (e.g. `location`, which scores source positions) gets
  `max_source_length` there unless the config sets it.

  Raises:
    ValueError: unknown field, encoder, decoder, cell, scorer, weighting or locality, or a combination the decoders
      cannot run (the message lists the valid choices).
  """
  config = dict(model_config.to_dict() if hasattr(model_config, 'to_dict') else model_config)
  unknown = sorted(set(config) - set(MODEL_FIELDS))
  if unknown:
    raise ValueError(f'Unknown model config field(s) {unknown}. Valid fields: {", ".join(MODEL_FIELDS)}.')
  if config.get('encoder', 'bigru') not in ENCODERS:
    raise ValueError(f'Unknown encoder {config["encoder"]!r}. Valid encoders: {", ".join(ENCODERS)}.')
  if config.get('decoder', 'bahdanau') not in DECODERS:
    raise ValueError(f'Unknown decoder {config["decoder"]!r}. Valid decoders: {", ".join(DECODERS)}.')
  if config.get('decoder_cell', 'gru') not in ('gru', 'lstm'):
    raise ValueError(f'Unknown decoder_cell {config["decoder_cell"]!r}. Valid cells: gru, lstm.')
  if config.get('transformer_attention', 'vmap') not in MULTI_HEAD_IMPLEMENTATIONS:
    raise ValueError(f'Unknown transformer_attention {config["transformer_attention"]!r}. Valid: '
                     f'{", ".join(MULTI_HEAD_IMPLEMENTATIONS)}.')
  check_attention_choices(config.get('decoder', 'bahdanau'), config.get('weighting', 'softmax'),
                          config.get('locality', 'global'), config.get('local_window', 10),
                          config.get('monotonic_noise', 1.0))
  if config.get('copy_attention', False):
    if config.get('decoder', 'bahdanau') != 'bahdanau':
      raise ValueError(f"copy_attention (the pointer-generator) is built on the Bahdanau decoder; got decoder="
                       f"{config['decoder']!r}. Set decoder='bahdanau' or copy_attention=False.")
    if int(source_vocab_size) != int(target_vocab_size):
      raise ValueError(f'copy_attention copies source ids into the output, so source and target need one vocabulary; '
                       f'got sizes {source_vocab_size} and {target_vocab_size}.')
  scorer = config.get('scorer', 'additive')
  options = scoring.with_source_length(scorer, config.get('scorer_options') or {}, max_source_length)
  scoring.check_options(scorer, options)
  config['scorer_options'] = FrozenDict(options)
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  if config.get('dtype', 'float32') not in dtypes:
    raise ValueError(f'Unknown dtype {config["dtype"]!r}. Valid dtypes: {", ".join(dtypes)}.')
  config['dtype'] = dtypes[config.get('dtype', 'float32')]
  return Seq2Seq(source_vocab_size=int(source_vocab_size), target_vocab_size=int(target_vocab_size), **config)
