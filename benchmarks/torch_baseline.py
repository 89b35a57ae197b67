"""The throughput benchmark's PyTorch baseline: the same translation model written as in the official PyTorch
seq2seq tutorial ("NLP From Scratch: Translation with a Sequence to Sequence Network and Attention").

As in the tutorial: `EncoderRNN` (embedding + `nn.GRU`, batch_first), `BahdanauAttention` (Wa, Ua, Va),
`AttnDecoderRNN` stepped in a Python loop with teacher forcing (`forward_step` per target position), eager
mode, cross-entropy loss, Adam. Changes that make it the same model as attention_jax's Bahdanau decoder
(and, if anything, faster than the tutorial):
  * the attention projections have no bias (attention_jax's additive scorer default), and the key
    projection Ua(keys) is computed once per batch instead of at every step (the tutorial recomputes it);
  * the decoder starts from tanh(bridge(encoder hidden)) and reads out through
    tanh(readout([s_t; c_t; y_{t-1}])) before the output layer (RNNsearch, as attention_jax);
  * no dropout (attention_jax's model runs with dropout_rate=0 here).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class EncoderRNN(nn.Module):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
    super().__init__()
    self.embedding = nn.Embedding(vocab_size, embed_dim)
    self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)

  def forward(self, source):
    """source [B, S] -> outputs [B, S, H], hidden [1, B, H]."""
    return self.gru(self.embedding(source))


class BahdanauAttention(nn.Module):

  def __init__(self, hidden_dim: int, attention_dim: int):
    super().__init__()
    self.Wa = nn.Linear(hidden_dim, attention_dim, bias=False)
    self.Ua = nn.Linear(hidden_dim, attention_dim, bias=False)
    self.Va = nn.Linear(attention_dim, 1, bias=False)

  def forward(self, query, keys, projected_keys):
    """query [B, 1, H], keys [B, S, H], projected_keys = Ua(keys) -> context [B, 1, H], weights [B, 1, S]."""
    scores = self.Va(torch.tanh(self.Wa(query) + projected_keys))
    weights = F.softmax(scores.squeeze(2).unsqueeze(1), dim=-1)
    return torch.bmm(weights, keys), weights


class AttnDecoderRNN(nn.Module):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, attention_dim: int):
    super().__init__()
    self.embedding = nn.Embedding(vocab_size, embed_dim)
    self.attention = BahdanauAttention(hidden_dim, attention_dim)
    self.bridge = nn.Linear(hidden_dim, hidden_dim)
    self.gru = nn.GRU(embed_dim + hidden_dim, hidden_dim, batch_first=True)
    self.readout = nn.Linear(hidden_dim + hidden_dim + embed_dim, hidden_dim)
    self.out = nn.Linear(hidden_dim, vocab_size)

  def forward(self, encoder_outputs, encoder_hidden, target_in):
    """Teacher forcing: target_in [B, T] -> logits [B, T, V]."""
    decoder_hidden = torch.tanh(self.bridge(encoder_hidden))
    projected_keys = self.attention.Ua(encoder_outputs)
    outputs = []
    for i in range(target_in.size(1)):
      output, decoder_hidden = self.forward_step(target_in[:, i].unsqueeze(1), decoder_hidden, encoder_outputs,
                                                 projected_keys)
      outputs.append(output)
    return torch.cat(outputs, dim=1)

  def forward_step(self, token, hidden, encoder_outputs, projected_keys):
    embedded = self.embedding(token)                                   # [B, 1, E]
    query = hidden.permute(1, 0, 2)                                    # [B, 1, H], the previous state
    context, _ = self.attention(query, encoder_outputs, projected_keys)
    output, hidden = self.gru(torch.cat((embedded, context), dim=2), hidden)
    readout = torch.tanh(self.readout(torch.cat((output, context, embedded), dim=2)))
    return self.out(readout), hidden


class Seq2Seq(nn.Module):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, attention_dim: int):
    super().__init__()
    self.encoder = EncoderRNN(vocab_size, embed_dim, hidden_dim)
    self.decoder = AttnDecoderRNN(vocab_size, embed_dim, hidden_dim, attention_dim)

  def forward(self, source, target_in):
    encoder_outputs, encoder_hidden = self.encoder(source)
    return self.decoder(encoder_outputs, encoder_hidden, target_in)


class Trainer:
  """The model, its Adam optimiser and one training step (the worker protocol of benchmarks.throughput)."""

  name = 'pytorch'

  def __init__(self, spec: dict, threads: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    self.settings = f'torch {torch.__version__}, eager, set_num_threads({threads})'
    self.model = Seq2Seq(spec['vocab_size'], spec['embed_dim'], spec['hidden_dim'], spec['attention_dim'])
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec['learning_rate'])
    self.num_params = sum(p.numel() for p in self.model.parameters())

  def step(self, batch: dict[str, np.ndarray]) -> float:
    source = torch.from_numpy(batch['source']).long()
    target_in = torch.from_numpy(batch['target_in']).long()
    target_out = torch.from_numpy(batch['target_out']).long()
    self.optimizer.zero_grad()
    logits = self.model(source, target_in)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_out.reshape(-1))
    loss.backward()
    self.optimizer.step()
    return loss.item()

  def timed_steps(self, batches: list[dict[str, np.ndarray]]) -> tuple[list[float], float]:
    times, loss = [], 0.0
    for batch in batches:
      start = time.perf_counter()
      loss = self.step(batch)          # .item() synchronises
      times.append(time.perf_counter() - start)
    return times, loss
