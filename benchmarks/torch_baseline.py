"""The throughput benchmark's PyTorch baselines: attention_jax's translation models written as PyTorch users write
them, eager mode, parameters copyable from the Flax models so that a test proves both compute the same function.

1. `Seq2Seq` + `Trainer` (benchmarks.throughput's synthetic model): the official PyTorch seq2seq tutorial
   ("NLP From Scratch: Translation with a Sequence to Sequence Network and Attention"). As in the tutorial:
   `EncoderRNN` (embedding + `nn.GRU`, batch_first), `BahdanauAttention` (Wa, Ua, Va), `AttnDecoderRNN` stepped
   in a Python loop with teacher forcing (`forward_step` per target position), cross-entropy loss, Adam. Changes
   that make it the same model as attention_jax's Bahdanau decoder (and, if anything, faster than the tutorial):
     * the attention projections have no bias (attention_jax's additive scorer default), and the key
       projection Ua(keys) is computed once per batch instead of at every step (the tutorial recomputes it);
     * the decoder starts from tanh(bridge(encoder hidden)) and reads out through
       tanh(readout([s_t; c_t; y_{t-1}])) before the output layer (RNNsearch, as attention_jax);
     * no dropout (attention_jax's model runs with dropout_rate=0 here).

2. `LuongSeq2Seq` + `LuongTrainer` (configs/messages_en_fr.py's real-data model: encoder='bilstm',
   decoder='luong', decoder_cell='lstm', scorer='general', input_feeding=True), written as in OpenNMT-py and the
   Luong-style tutorials, layer for layer the same as attention_jax's `Seq2Seq` with those settings:
     * `nn.Embedding` source and target embeddings, dropout on both (attention_jax's `Seq2Seq.dropout`);
     * a bidirectional `nn.LSTM` (batch_first) over `pack_padded_sequence`: attention_jax's `RNNEncoder` passes
       per-example `seq_lengths`, so its forward final state is the last real token's and its backward direction
       starts at the last real token; padded outputs are zero (pad_packed_sequence's padding, attention_jax's
       `jnp.where(mask, x, 0)`); dropout between stacked layers (`nn.LSTM(dropout=)`) as attention_jax;
     * the bridge of `_CellBase.initial_state`: h_0 = tanh(W_b [h_fwd; h_bwd] + b_b), c_0 = 0, h~_0 = 0;
     * `nn.LSTMCell` stepped in a Python loop (input feeding makes x_t = [y_{t-1}; h~_{t-1}] depend on the
       previous step): h_t from the LSTM first, then Luong general attention e_tj = h_t^T W k_j with W k_j
       computed once per batch (`score_projection`, no bias; OpenNMT-py projects the query instead, the same
       function with W transposed), masked softmax over the real source positions, c_t = sum_j a_tj k_j,
       h~_t = tanh(W_c [c_t; h_t]) (no bias), logits = W_s dropout(h~_t) + b_s for all steps at once after the
       loop (the generator does not feed back, as in OpenNMT-py);
     * token cross-entropy with label smoothing averaged over the non-PAD targets (`F.cross_entropy`
       with `ignore_index=PAD_ID, label_smoothing=eps`, the same as attention_jax's `token_losses`); AdamW with
       attention_jax's `make_optimizer` settings (b2 0.98, eps 1e-9, linear warm-up, global-norm clipping);
     * every batch is trimmed to its own longest source and target before the forward pass (padded per batch, as
       PyTorch users do; exact, since padded positions are masked and the decoder is causal);
     * `greedy` and `beam_search` decode as attention_jax.decoding (PAD and BOS never emitted, GNMT length
       penalty ((5 + |Y|) / 6) ** alpha, 2K candidates a step, the K best finished hypotheses kept).
   `luong_params_from_flax` converts a Flax parameter tree into the module's state_dict
   (tests/benchmarks/test_torch_luong_parity.py checks logits, attention weights, loss, gradients and decoded
   tokens against attention_jax). Where the PyTorch code differs, neither the function nor its gradients do:
     * `nn.LSTM` / `nn.LSTMCell` have two biases per gate (bias_ih, bias_hh) where Flax has one: bias_ih is
       loaded as zero and trained along (3 * 4H more parameters, 3072 at H = 256, counted in `num_params`);
     * `nn.Embedding(padding_idx=PAD_ID)` as in OpenNMT-py: the PAD rows get no gradient, which in attention_jax
       they get none either for well-formed batches (PAD only after EOS in sources and targets);
     * every source row needs at least one real token (`pack_padded_sequence` refuses length 0; attention_jax
       would give such a row a zero summary).

What a trainer's `step` measures: numpy batch -> tensors -> forward, loss, backward, optimiser step -> the loss
on the host (`.item()` synchronises).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID


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

  def initial_state(self, memory: dict) -> dict:
    """The decoding state, batch first so beam search can reorder it: {'h': [B, H]}."""
    return {'h': torch.tanh(self.bridge(memory['summary']))}

  def decode_step(self, state: dict, prev_tokens, memory: dict):
    """Inference: prev_tokens [B] -> state, logits [B, V], weights [B, S] (`forward_step`, one position)."""
    logits, hidden = self.forward_step(prev_tokens.unsqueeze(1), state['h'].unsqueeze(0), memory['values'],
                                       memory['projected_keys'])
    return {'h': hidden.squeeze(0)}, logits.squeeze(1), None


class Seq2Seq(nn.Module):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, attention_dim: int):
    super().__init__()
    self.encoder = EncoderRNN(vocab_size, embed_dim, hidden_dim)
    self.decoder = AttnDecoderRNN(vocab_size, embed_dim, hidden_dim, attention_dim)

  def forward(self, source, target_in):
    encoder_outputs, encoder_hidden = self.encoder(source)
    return self.decoder(encoder_outputs, encoder_hidden, target_in)

  def encode(self, source) -> dict:
    """source [B, S] -> the decoder's memory, batch first: values [B, S, H], projected keys, summary [B, H]."""
    outputs, hidden = self.encoder(source)
    return {'values': outputs, 'projected_keys': self.decoder.attention.Ua(outputs), 'summary': hidden.squeeze(0)}


class Trainer:
  """The model, its Adam optimiser and one training step (the worker protocol of benchmarks.throughput)."""

  name = 'pytorch'

  def __init__(self, spec: dict, threads: int, device: str = 'cpu'):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    self.device = torch.device(device)
    self.settings = f'torch {torch.__version__}, eager, set_num_threads({threads}), {device}'
    self.model = Seq2Seq(spec['vocab_size'], spec['embed_dim'], spec['hidden_dim'], spec['attention_dim']).to(device)
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec['learning_rate'])
    self.num_params = sum(p.numel() for p in self.model.parameters())

  def step(self, batch: dict[str, np.ndarray]) -> float:
    source, target_in, target_out = (torch.from_numpy(batch[key]).long().to(self.device)
                                     for key in ('source', 'target_in', 'target_out'))
    self.model.train()
    self.optimizer.zero_grad()
    logits = self.model(source, target_in)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_out.reshape(-1))
    loss.backward()
    self.optimizer.step()
    return loss.item()

  def decode(self, mode: str, source: np.ndarray, max_length: int, beam_size: int = 4) -> np.ndarray:
    """greedy | beam (length penalty 0.6), attention_jax.decoding's algorithms: source [B, S] -> tokens [B, T]."""
    self.model.eval()
    source = torch.from_numpy(source).long().to(self.device)
    if mode == 'greedy':
      return greedy_decode(self.model, source, max_length).cpu().numpy()
    return beam_search(self.model, source, max_length, beam_size=beam_size, length_penalty=0.6).cpu().numpy()

  def timed_steps(self, batches: list[dict[str, np.ndarray]]) -> tuple[list[float], float]:
    times, loss = [], 0.0
    for batch in batches:
      start = time.perf_counter()
      loss = self.step(batch)          # .item() synchronises
      times.append(time.perf_counter() - start)
    return times, loss


# ----------------------------------------------------------------------------------------------------------
# The real-data model: BiLSTM encoder + Luong decoder (LSTM, general attention, input feeding).

# attention_jax's masked softmax fills masked scores with this finite value, then zeroes their weights.
_MASK_FILL = float(torch.finfo(torch.float32).min)
_NEG_INF = -1e9   # decoding's forbidden log-probability, finite as in attention_jax.decoding

LUONG_SPEC = {             # configs/messages_en_fr.py's model and optimiser (vocabulary sizes come from the data)
    'embed_dim': 256,
    'hidden_dim': 256,
    'encoder_layers': 1,
    'input_feeding': True,
    'dropout_rate': 0.2,
    'label_smoothing': 0.1,
    'optimizer': 'adamw',  # adamw (b2 0.98, eps 1e-9) | adam (Kingma & Ba defaults), as attention_jax
    'learning_rate': 1e-3,
    'warmup_steps': 500,
    'grad_clip_norm': 1.0,  # 0 disables
    'weight_decay': 0.0,
}


class LuongEncoder(nn.Module):
  """Embedding -> dropout -> bidirectional nn.LSTM over the packed (unpadded) sequences."""

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, dropout_rate: float):
    super().__init__()
    self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
    self.dropout = nn.Dropout(dropout_rate)
    self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True,
                        dropout=dropout_rate if num_layers > 1 else 0.0)

  def forward(self, source):
    """source [B, S] (every row at least one real token) -> outputs [B, S, 2H] (zero at PAD), summary [B, 2H]."""
    lengths = (source != PAD_ID).sum(1)
    packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.embedding(source)), lengths.cpu(), batch_first=True,
                                               enforce_sorted=False)
    outputs, (h_n, _) = self.lstm(packed)
    outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=source.size(1))
    return outputs, torch.cat([h_n[-2], h_n[-1]], dim=-1)        # last layer: forward, backward final states


class LuongDecoder(nn.Module):
  """h_t = LSTMCell([y_{t-1}; h~_{t-1}]), a_t = softmax(h_t^T W k_j), h~_t = tanh(W_c [c_t; h_t]), W_s h~_t."""

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, key_dim: int, dropout_rate: float,
               input_feeding: bool = True):
    super().__init__()
    self.input_feeding = input_feeding
    self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
    self.dropout = nn.Dropout(dropout_rate)
    self.bridge = nn.Linear(key_dim, hidden_dim)
    self.score_projection = nn.Linear(key_dim, hidden_dim, bias=False)   # the general score's W [H, 2H]
    self.cell = nn.LSTMCell(embed_dim + (hidden_dim if input_feeding else 0), hidden_dim)
    self.combine = nn.Linear(key_dim + hidden_dim, hidden_dim, bias=False)
    self.output = nn.Linear(hidden_dim, vocab_size)

  def prepare_memory(self, outputs, summary, mask) -> dict:
    """Encoder outputs [B, S, 2H], summary [B, 2H], mask [B, S] -> memory with W k_j done once per batch."""
    return {'values': outputs, 'projected_keys': self.score_projection(outputs), 'mask': mask, 'summary': summary}

  def initial_state(self, memory: dict) -> dict:
    h0 = torch.tanh(self.bridge(memory['summary']))
    return {'h': h0, 'c': torch.zeros_like(h0), 'attentional': torch.zeros_like(h0)}

  def step(self, state: dict, embedded, memory: dict):
    """state, embedded [B, E] -> state, (h~_t [B, H], weights [B, S])."""
    x = torch.cat([embedded, state['attentional']], dim=-1) if self.input_feeding else embedded
    h, c = self.cell(x, (state['h'], state['c']))
    scores = torch.bmm(memory['projected_keys'], h.unsqueeze(2)).squeeze(2)                 # [B, S]
    mask = memory['mask']
    weights = F.softmax(scores.masked_fill(~mask, _MASK_FILL), dim=-1).masked_fill(~mask, 0.0)
    context = torch.bmm(weights.unsqueeze(1), memory['values']).squeeze(1)                   # [B, 2H]
    attentional = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
    return {'h': h, 'c': c, 'attentional': attentional}, (attentional, weights)

  def forward(self, memory: dict, target_in):
    """Teacher forcing: target_in [B, T] -> logits [B, T, V], weights [B, T, S]."""
    embedded = self.dropout(self.embedding(target_in))
    state = self.initial_state(memory)
    attentionals, weights = [], []
    for t in range(target_in.size(1)):
      state, (attentional, weights_t) = self.step(state, embedded[:, t], memory)
      attentionals.append(attentional)
      weights.append(weights_t)
    # The output layer does not feed back: one [B * T, H] x [H, V] matmul after the loop, as OpenNMT-py's generator.
    logits = self.output(self.dropout(torch.stack(attentionals, dim=1)))
    return logits, torch.stack(weights, dim=1)

  def decode_step(self, state: dict, prev_tokens, memory: dict):
    """Inference: prev_tokens [B] -> state, logits [B, V], weights [B, S]."""
    state, (attentional, weights) = self.step(state, self.embedding(prev_tokens), memory)
    return state, self.output(attentional), weights


class LuongSeq2Seq(nn.Module):
  """attention_jax's Seq2Seq(encoder='bilstm', decoder='luong', decoder_cell='lstm', scorer='general')."""

  def __init__(self, source_vocab_size: int, target_vocab_size: int, embed_dim: int, hidden_dim: int,
               encoder_layers: int = 1, dropout_rate: float = 0.0, input_feeding: bool = True):
    super().__init__()
    self.encoder = LuongEncoder(source_vocab_size, embed_dim, hidden_dim, encoder_layers, dropout_rate)
    self.decoder = LuongDecoder(target_vocab_size, embed_dim, hidden_dim, 2 * hidden_dim, dropout_rate,
                                input_feeding)

  def encode(self, source) -> dict:
    """source [B, S] -> the decoder's memory (values, projected keys, mask, summary)."""
    outputs, summary = self.encoder(source)
    return self.decoder.prepare_memory(outputs, summary, source != PAD_ID)

  def forward(self, source, target_in):
    """source [B, S], target_in [B, T] -> logits [B, T, V], weights [B, T, S] (teacher forcing)."""
    return self.decoder(self.encode(source), target_in)


def luong_loss(logits, target_out, label_smoothing: float):
  """Label-smoothed token cross-entropy averaged over the non-PAD targets: [B, T, V], [B, T] -> scalar."""
  return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_out.reshape(-1), ignore_index=PAD_ID,
                         label_smoothing=label_smoothing)


def _torch_lstm_weights(cell: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A Flax OptimizedLSTMCell's params -> (weight_ih [4H, I], weight_hh [4H, H], bias_hh [4H]) in gate order i,f,g,o.

  Flax keeps one kernel per gate ('ii', 'if', 'ig', 'io' on the input, bias-free; 'hi', ... on h, with the bias);
  PyTorch stacks the gates i, f, g, o along the output rows of (out, in) weights.
  """
  weight_ih = np.concatenate([np.asarray(cell[f'i{g}']['kernel']) for g in 'ifgo'], axis=1).T
  weight_hh = np.concatenate([np.asarray(cell[f'h{g}']['kernel']) for g in 'ifgo'], axis=1).T
  bias_hh = np.concatenate([np.asarray(cell[f'h{g}']['bias']) for g in 'ifgo'])
  return weight_ih, weight_hh, bias_hh


def luong_params_from_flax(params) -> dict[str, torch.Tensor]:
  """attention_jax Seq2Seq(encoder='bilstm', decoder='luong', decoder_cell='lstm', scorer='general') params ->
  a `LuongSeq2Seq` state_dict (Dense kernels [in, out] transposed to Linear weights [out, in]; PyTorch's second
  LSTM bias, bias_ih, set to zero since Flax has one bias per gate)."""
  cell = params['cell']
  state = {
      'encoder.embedding.weight': np.asarray(params['source_embed']['embedding']),
      'decoder.embedding.weight': np.asarray(params['target_embed']['embedding']),
      'decoder.bridge.weight': np.asarray(cell['bridge']['kernel']).T,
      'decoder.bridge.bias': np.asarray(cell['bridge']['bias']),
      'decoder.score_projection.weight': np.asarray(cell['attention']['scorer']['W']),   # [d_q, d_k] = (out, in)
      'decoder.combine.weight': np.asarray(cell['combine']['kernel']).T,
      'decoder.output.weight': np.asarray(cell['output']['kernel']).T,
      'decoder.output.bias': np.asarray(cell['output']['bias']),
  }
  weight_ih, weight_hh, bias_hh = _torch_lstm_weights(cell['rnn'])
  state.update({'decoder.cell.weight_ih': weight_ih, 'decoder.cell.weight_hh': weight_hh,
                'decoder.cell.bias_ih': np.zeros_like(bias_hh), 'decoder.cell.bias_hh': bias_hh})
  # RNNEncoder creates its cells in order forward_0, backward_0, forward_1, ...: OptimizedLSTMCell_{2l}, _{2l + 1}.
  encoder = params['source_encoder']
  for layer in range(len(encoder) // 2):
    for direction, suffix in ((0, ''), (1, '_reverse')):
      weight_ih, weight_hh, bias_hh = _torch_lstm_weights(encoder[f'OptimizedLSTMCell_{2 * layer + direction}'])
      name = f'encoder.lstm.{{}}_l{layer}{suffix}'
      state.update({name.format('weight_ih'): weight_ih, name.format('weight_hh'): weight_hh,
                    name.format('bias_ih'): np.zeros_like(bias_hh), name.format('bias_hh'): bias_hh})
  return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in state.items()}


def _forbid_special(scores):
  """PAD and BOS can never be emitted (attention_jax.decoding's rule), in place: [..., V] -> [..., V]."""
  scores[..., PAD_ID] = _NEG_INF
  scores[..., BOS_ID] = _NEG_INF
  return scores


def _log_probs(logits):
  """log_softmax with PAD and BOS forbidden: [..., V] -> [..., V]."""
  return _forbid_special(F.log_softmax(logits.float(), dim=-1))


def _allowed_logits(logits):
  """The logits with PAD and BOS forbidden (the same argmax as _log_probs, without the log_softmax): [..., V] ->
  [..., V], a copy."""
  return _forbid_special(logits.float().clone())


@torch.inference_mode()
def greedy_decode(model: nn.Module, source, max_length: int):
  """The most likely token at every step: source [B, S] long -> tokens [B, T] long (EOS, then PAD)."""
  memory = model.encode(source)
  state = model.decoder.initial_state(memory)
  prev = torch.full((source.size(0),), BOS_ID, dtype=torch.long, device=source.device)
  finished = torch.zeros(source.size(0), dtype=torch.bool, device=source.device)
  tokens = []
  for _ in range(max_length):          # all max_length steps, as attention_jax's scan
    state, logits, _ = model.decoder.decode_step(state, prev, memory)
    prev = _allowed_logits(logits).argmax(-1).masked_fill(finished, PAD_ID)   # = the log-probs' argmax
    finished = finished | (prev == EOS_ID)
    tokens.append(prev)
  return torch.stack(tokens, dim=1)


def length_penalty_factor(length, alpha: float):
  """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016); score = log P(Y) / lp(Y)."""
  return ((5.0 + float(length)) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(model: nn.Module, source, max_length: int, beam_size: int = 4, length_penalty: float = 0.6):
  """Batched beam search, attention_jax.decoding.beam_search's algorithm: source [B, S] -> tokens [B, T] long.

  K alive hypotheses ranked by log-probability and the K best finished ones ranked by log P / lp; each step
  scores the 2K best extensions so K alive remain when up to K end in EOS. The result is the best finished
  hypothesis, or the best alive one if none finished within max_length. Attention weights are not tracked.
  """
  batch, k = source.size(0), beam_size
  memory = {name: value.repeat_interleave(k, dim=0) for name, value in model.encode(source).items()}
  state = model.decoder.initial_state(memory)
  device = source.device
  alive_tokens = torch.zeros(batch, k, max_length, dtype=torch.long, device=device)
  alive_log_prob = torch.full((batch, k), _NEG_INF, device=device)
  alive_log_prob[:, 0] = 0.0          # only beam 0 is live at first, so step 1 does not pick K copies of a token
  last = torch.full((batch, k), BOS_ID, dtype=torch.long, device=device)
  finished_tokens = torch.zeros(batch, k, max_length, dtype=torch.long, device=device)
  finished_score = torch.full((batch, k), _NEG_INF, device=device)
  take = lambda x, index: torch.gather(x, 1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand(
      *index.shape, *x.shape[2:]))
  for t in range(max_length):
    state, logits, _ = model.decoder.decode_step(state, last.reshape(-1), memory)
    vocab = logits.size(-1)
    candidates = alive_log_prob.unsqueeze(-1) + _log_probs(logits).view(batch, k, vocab)
    top_log_prob, top_index = candidates.view(batch, k * vocab).topk(2 * k, dim=1)        # [B, 2K]
    beam, token = top_index // vocab, top_index % vocab
    tokens = take(alive_tokens, beam).clone()
    tokens[:, :, t] = token
    is_eos = token == EOS_ID
    eos_score = torch.where(is_eos, top_log_prob / length_penalty_factor(t + 1, length_penalty),
                            torch.full_like(top_log_prob, _NEG_INF))
    finished_score, best = torch.cat([finished_score, eos_score], dim=1).topk(k, dim=1)
    finished_tokens = take(torch.cat([finished_tokens, tokens], dim=1), best)
    alive_log_prob, keep = top_log_prob.masked_fill(is_eos, _NEG_INF).topk(k, dim=1)
    alive_tokens, last = take(tokens, keep), take(token, keep)
    rows = (torch.arange(batch, device=device).unsqueeze(1) * k + take(beam, keep)).reshape(-1)
    state = {name: value.index_select(0, rows) for name, value in state.items()}
  alive_score = alive_log_prob / length_penalty_factor(max_length, length_penalty)
  best_alive = alive_tokens[torch.arange(batch, device=device), alive_score.argmax(1)]
  any_finished = (finished_score[:, 0] > _NEG_INF / 2).unsqueeze(1)
  return torch.where(any_finished, finished_tokens[:, 0], best_alive)


def _longest(tokens: np.ndarray) -> int:
  """The longest row's length of PAD-right-padded tokens [B, L] (at least 1)."""
  return max(int((tokens != PAD_ID).sum(1).max()), 1)


def trim_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Cuts a PAD-right-padded batch to its own longest source and target (exact: PAD positions are masked and the
  decoder is causal, so the kept positions' logits and the loss do not change)."""
  source_length, target_length = _longest(batch['source']), _longest(batch['target_out'])
  return {'source': batch['source'][:, :source_length], 'target_in': batch['target_in'][:, :target_length],
          'target_out': batch['target_out'][:, :target_length]}


class LuongTrainer(Trainer):
  """LuongSeq2Seq, attention_jax's optimiser and one training step on per-batch-trimmed numpy batches.

  spec: LUONG_SPEC's keys (missing ones take its values) and the vocabulary sizes, as source_vocab_size and
  target_vocab_size or one vocab_size for both. params: optionally an attention_jax Flax parameter tree to start
  from (luong_params_from_flax), so both frameworks start from the same weights.
  """

  def __init__(self, spec: dict, threads: int, params=None):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = {**LUONG_SPEC, **spec}
    self.spec = spec
    self.settings = f'torch {torch.__version__}, eager, set_num_threads({threads}), batches trimmed per batch'
    self.model = LuongSeq2Seq(spec.get('source_vocab_size', spec.get('vocab_size')),
                              spec.get('target_vocab_size', spec.get('vocab_size')), spec['embed_dim'],
                              spec['hidden_dim'], spec['encoder_layers'], spec['dropout_rate'], spec['input_feeding'])
    if params is not None:
      self.model.load_state_dict(luong_params_from_flax(params))
    if spec['optimizer'] == 'adamw':
      self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec['learning_rate'], betas=(0.9, 0.98),
                                         eps=1e-9, weight_decay=spec['weight_decay'])
    elif spec['optimizer'] == 'adam':
      self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec['learning_rate'])
    else:
      raise ValueError(f'Unknown optimizer {spec["optimizer"]!r}. Valid optimizers: adamw, adam.')
    warmup = int(spec['warmup_steps'])
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                       lambda step: min(step / warmup, 1.0) if warmup else 1.0)
    self.num_params = sum(p.numel() for p in self.model.parameters())

  def step(self, batch: dict[str, np.ndarray]) -> float:
    batch = trim_batch(batch)
    source, target_in, target_out = (torch.from_numpy(batch[k]).long() for k in ('source', 'target_in', 'target_out'))
    self.model.train()
    self.optimizer.zero_grad()
    logits, _ = self.model(source, target_in)
    loss = luong_loss(logits, target_out, self.spec['label_smoothing'])
    loss.backward()
    if self.spec['grad_clip_norm']:
      nn.utils.clip_grad_norm_(self.model.parameters(), self.spec['grad_clip_norm'])
    self.optimizer.step()
    self.scheduler.step()
    return loss.item()

  def greedy(self, source: np.ndarray, max_length: int) -> np.ndarray:
    """source [B, S] int (PAD-padded) -> tokens [B, max_length] int32 (EOS, then PAD)."""
    self.model.eval()
    source = torch.from_numpy(source[:, :_longest(source)]).long()
    return greedy_decode(self.model, source, max_length).numpy().astype(np.int32)

  def beam_search(self, source: np.ndarray, max_length: int, beam_size: int = 4,
                  length_penalty: float = 0.6) -> np.ndarray:
    """source [B, S] int (PAD-padded) -> tokens [B, max_length] int32 of the best hypothesis."""
    self.model.eval()
    source = torch.from_numpy(source[:, :_longest(source)]).long()
    return beam_search(self.model, source, max_length, beam_size, length_penalty).numpy().astype(np.int32)
