"""The base of every encoder-attention-decoder model: teacher forcing and step-by-step decoding.

A subclass only says how its inputs become the decoder's `Memory` (`encode`); the rest is shared:

    logits [B, T, V], weights [B, T, S] = model.apply(v, inputs, target_in [B, T], train=False)   # teacher forcing
    memory = model.apply(v, inputs, method='encode')                          # encoder + key-side work, once
    carry = model.apply(v, memory, method='initial_state')
    carry, logits [B, V], weights [B, S] = model.apply(v, carry, prev_tokens [B], memory, method='decode_step')

S is what the decoder attends over (source positions, image grid cells). `attention_jax.decoding` drives the
step-by-step methods by name, so it decodes any subclass.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from attention_jax.models.decoders import Memory

Array = jax.Array


class AttentionDecoderModel(nn.Module):
  """What every encoder-attention-decoder model shares once its `encode` has built the decoder's Memory.

  Subclasses define `setup` with `self.cell` (a decoder cell of attention_jax.models.decoders),
  `self.target_embed` (nn.Embed of the output tokens) and `self.dropout` (nn.Dropout), and
  `encode(inputs, *, train) -> Memory`.
  """

  def initial_state(self, memory: Memory) -> dict[str, Array]:
    """The decoder state before the first output token."""
    return self.cell.initial_state(memory)

  def decode_step(self, carry: dict, prev_tokens: Array, memory: Memory) -> tuple[dict, Array, Array]:
    """One inference step: prev_tokens [B] -> (carry, logits [B, V] float32, weights [B, S]). Attention decides
    hard where its weighting has a test-time form (monotonic)."""
    carry, (logits, weights) = self.cell(carry, self.target_embed(prev_tokens), memory, train=False, hard=True)
    return carry, logits.astype(jnp.float32), weights

  def __call__(self, inputs: Array, target_in: Array, *, train: bool = False) -> tuple[Array, Array]:
    """Teacher forcing: inputs (what `encode` takes), target_in [B, T] -> (logits [B, T, V] float32,
    weights [B, T, S]), S being what the decoder attends over (source positions, image grid cells)."""
    memory = self.encode(inputs, train=train)
    embedded = self.dropout(self.target_embed(target_in), deterministic=not train)
    logits, weights = self.cell.teacher_forced(self.initial_state(memory), embedded, memory, train=train)
    return logits.astype(jnp.float32), weights
