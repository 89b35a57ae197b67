"""Evaluating a translation model: teacher-forced loss and alignment scores, decoded BLEU/chrF/exact match
(and ROUGE), and attention heatmaps of test examples.

    results = evaluate(runner, state, task, model, 'test', config, with_decoding=True)
    paths = save_heatmaps(params, task, model, config, directory)
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.data import CharTokenizer
from attention_jax.metrics.alignment import alignment_counts, alignment_summary
from attention_jax.metrics.rouge import rouge_scores
from attention_jax.metrics.summarisation import repeated_ngram_share
from attention_jax.metrics.translation import dropped_and_extra_units, translation_scores
from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID
from attention_jax.training.sequence_losses import summarize_sequence_metrics


def decode_batch(model, params, source: np.ndarray, eval_config, max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """The config's decoding (greedy for beam_size <= 1, else beam search) -> (tokens [B, T], attention [B, T, S])."""
  return decoding.decode(model, params, source, max_length=max_length, beam_size=int(eval_config.beam_size),
                         length_penalty=float(eval_config.length_penalty),
                         coverage_penalty=float(eval_config.get('coverage_penalty', 0.0)))


def decode_n_best(model, params, source: np.ndarray, eval_config, max_length: int,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The n best outputs of the config's decoding, best first.

  Beam search (eval_config.beam_size = K > 1, n <= K) scores each hypothesis as it ranks them, log P / lp + cp;
  greedy decoding (K <= 1) has one output, scored by its log-probability log P.

  Returns:
    (tokens [B, n, T] int32, weights [B, n, T, S] float32, scores [B, n] float32) on the host.
  """
  beam = int(eval_config.beam_size)
  if n < 1 or n > max(beam, 1):
    raise ValueError(f'{n} best outputs need beam search with beam_size >= {n}; beam_size is {beam}'
                     + (' (greedy decoding has one output)' if beam <= 1 else '') + '.')
  source = np.asarray(source)
  if beam <= 1:
    tokens, weights = decoding.greedy_decode(model, params, source, max_length=int(max_length))
    scores = decoding.sequence_log_prob(model, params, source, tokens)
    tokens, weights, scores = tokens[:, None], weights[:, None], scores[:, None]
  else:
    tokens, weights, scores, _ = decoding.beam_search_n_best(
        model, params, source, max_length=int(max_length), beam_size=beam, n=int(n),
        length_penalty=float(eval_config.length_penalty),
        coverage_penalty_weight=float(eval_config.get('coverage_penalty', 0.0)))
  return np.asarray(tokens, np.int32), np.asarray(weights, np.float32), np.asarray(scores, np.float32)


def decoding_label(eval_config) -> str:
  """'greedy' or 'beam<K>': the name of the config's decoding in reports and explorer pages."""
  beam = int(eval_config.beam_size)
  return f'beam{beam}' if beam > 1 else 'greedy'


def copies(model) -> bool:
  """Whether the model is a pointer-generator (its decoder copies source tokens and reports p_gen)."""
  return bool(getattr(model, 'copy_attention', False))


def copy_gates(model, params, source: np.ndarray, tokens: np.ndarray) -> np.ndarray:
  """The pointer-generator's p_gen for each output token: source [B, S], tokens [B, T] (outputs, or references'
  target_out) -> [B, T] float32 on the host, zero at PAD. The decoder is teacher-forced on `tokens`, which gives the
  same p_gen as decoding them step by step."""
  target_in = np.concatenate([np.full((len(tokens), 1), BOS_ID, np.int32), np.asarray(tokens, np.int32)[:, :-1]], 1)
  gates = _gates(model)({'params': params}, np.asarray(source), target_in)
  return np.where(np.asarray(tokens) != PAD_ID, np.asarray(gates, np.float32), 0.0)


@functools.lru_cache(maxsize=8)
def _gates(model):
  def apply(variables, source, target_in):
    _, state = model.apply(variables, source, target_in, train=False, mutable=['intermediates'])
    return state['intermediates']['cell']['p_gen'][0]
  return jax.jit(apply)


def decode_split(model, params, task, split: str, eval_config, *, gates: list | None = None) -> list[str]:
  """Decoded texts of the first eval_config.max_examples examples of `split` (all when 0), in split order.

  Batches are grouped by source length when the task has buckets (task.decode_batches), then put back in order.
  gates: for a pointer-generator, a list that receives each output's p_gen per token ([T_i] arrays, EOS included),
  in split order.
  """
  count = len(task.kept_indices(split)[:eval_config.max_examples or None])
  hypotheses, gate_rows = [None] * count, [None] * count
  for batch, max_length in task.decode_batches(split, batch_size=int(eval_config.batch_size),
                                               max_examples=eval_config.max_examples or None):
    tokens, _ = decode_batch(model, params, batch['source'], eval_config, max_length)
    batch_gates = copy_gates(model, params, batch['source'], tokens) if gates is not None and copies(model) else None
    for row_index, (index, row) in enumerate(zip(batch['index'], tokens)):
      if index >= 0:
        hypotheses[index] = task.target_tokenizer.decode(row)
        if batch_gates is not None:
          gate_rows[index] = batch_gates[row_index][np.asarray(row) != PAD_ID]
  if gates is not None and copies(model):
    gates.extend(gate_rows)
  return hypotheses


def copy_rate(gates: list) -> dict[str, float]:
  """{'copy_rate': mean 1 - p_gen over every output token (EOS included)} of decode_split's gates; {} when none."""
  values = np.concatenate([np.asarray(g, np.float64) for g in gates]) if gates else np.zeros(0)
  return {'copy_rate': float(1.0 - values.mean())} if len(values) else {}


def process_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """This process's block of rows of a global batch [B, ...] -> [B / process_count, ...]."""
  rows = len(batch['source']) // jax.process_count()
  start = jax.process_index() * rows
  return {k: v[start:start + rows] for k, v in batch.items()}


def length_bucket_names(edges) -> list[str]:
  """Names of the source-length buckets that `edges` (ascending upper bounds) cut: '1-5', '6-10', ..., '31+'."""
  lows = [1] + [e + 1 for e in edges]
  return [f'{lo}-{hi}' for lo, hi in zip(lows, edges)] + [f'{lows[-1]}+']


def scores_by_length(hypotheses, references, source_lengths, edges, *, tokenize: str) -> dict[str, float]:
  """BLEU, chrF and exact match of each source-length bucket, plus its size.

  Args:
    hypotheses, references: [N] strings.
    source_lengths: [N] source lengths in tokens (EOS included).
    edges: ascending bucket upper bounds; a length l falls in the first bucket with l <= edge (the last is open).

  Returns:
    {'bleu_len_<lo>-<hi>', 'chrf_len_...', 'exact_match_len_...', 'count_len_...'} for every non-empty bucket.
  """
  buckets = np.digitize(np.asarray(source_lengths), list(edges), right=True)
  out = {}
  for index, name in enumerate(length_bucket_names(edges)):
    chosen = np.flatnonzero(buckets == index)
    if len(chosen):
      scores = translation_scores([hypotheses[i] for i in chosen], [references[i] for i in chosen],
                                  tokenize=tokenize)
      out.update({f'{metric}_len_{name}': value for metric, value in scores.items()})
      out[f'count_len_{name}'] = float(len(chosen))
  return out


def decoded_scores(task, split: str, hypotheses, references, eval_config, length_buckets=None) -> dict[str, float]:
  """BLEU, chrF and exact match of decoded texts of `split` (words: sacrebleu '13a'; character tasks: 'char'),
  the rates of dropped and extra units against the references (words or characters), with `length_buckets` also
  per source-length bucket, and ROUGE-1/2/L F1 when eval_config.rouge."""
  tokenize = 'char' if isinstance(task.target_tokenizer, CharTokenizer) else '13a'
  results = translation_scores(hypotheses, references, tokenize=tokenize)
  results.update(dropped_and_extra_units(hypotheses, references, unit='char' if tokenize == 'char' else 'word'))
  if length_buckets:
    source_lengths = task.lengths(split)[0][:len(hypotheses)]
    results.update(scores_by_length(hypotheses, references, source_lengths, length_buckets, tokenize=tokenize))
  if eval_config.get('rouge', False):
    results.update(rouge_scores(hypotheses, references))
    results['repeated_trigrams'] = repeated_ngram_share(hypotheses, 3)
  return results


def evaluate(runner, state, task, model, split: str, config, *, with_decoding: bool,
             length_buckets=None) -> dict[str, float]:
  """Teacher-forced loss/perplexity/accuracy and alignment scores; with decoding also BLEU, chrF and exact match
  (and ROUGE-1/2/L when config.eval.rouge), and with `length_buckets` (ascending source lengths incl. EOS) the
  same scores per source-length bucket (`scores_by_length`).

  The global eval batches are those of a single-process run; each process feeds its own block of rows, so
  the numbers do not depend on the number of processes.
  """
  eval_config = config.eval
  batches = task.eval_batches(split, batch_size=int(eval_config.batch_size),
                              max_examples=eval_config.max_examples or None, by_length=True)
  sums, counts = None, None
  for global_batch in batches:
    batch = process_rows(global_batch)
    metrics, attention = runner.eval_step(state, batch)
    sums = metrics if sums is None else {k: sums[k] + metrics[k] for k in sums}
    if task.has_alignments:
      target_mask = (batch['target_out'] != PAD_ID) & (batch['target_out'] != EOS_ID)
      c = alignment_counts(attention, batch['alignment'], target_mask)
      counts = c if counts is None else {k: counts[k] + c[k] for k in counts}
  if counts is not None and jax.process_count() > 1:
    # The metric sums above are already global (computed on global arrays); the host-side counts are not.
    totals = multihost_utils.process_allgather(np.asarray(list(counts.values()), np.float32)).sum(0)
    counts = dict(zip(counts, totals.tolist()))
  results = summarize_sequence_metrics(sums)
  if counts is not None and config.model.decoder != 'none':
    results.update(alignment_summary(counts))
  if with_decoding:
    # Every process decodes the whole global batches: the same inputs everywhere.
    gates = []
    hypotheses = decode_split(model, runner.get_state(state).params, task, split, eval_config, gates=gates)
    references = [target for _, target in task.examples(split, eval_config.max_examples or None)]
    results.update(decoded_scores(task, split, hypotheses, references, eval_config, length_buckets))
    results.update(copy_rate(gates))
  return results


def teacher_forced_attention(model, params, source: np.ndarray, target_in: np.ndarray) -> np.ndarray:
  """The attention of teacher forcing (no dropout): source [B, S], target_in [B, T] -> weights [B, T, S] on the host."""
  _, weights = _forced(model)({'params': params}, source, target_in)
  return np.asarray(weights, np.float32)


@functools.lru_cache(maxsize=8)
def _forced(model):
  return jax.jit(functools.partial(model.apply, train=False))


def first_examples(task, split: str, count: int, eval_config) -> tuple[dict, int]:
  """(one batch holding the first `count` examples of `split`, padded to eval_config.batch_size so the programs
  compiled for evaluation serve it, and how many of its rows are real examples)."""
  batch = task.eval_batches(split, batch_size=max(int(eval_config.batch_size), count), max_examples=count)[0]
  return batch, min(count, int((batch['index'] >= 0).sum()))


def heatmap_images(params, task, model, config, split: str = 'validation') -> dict[str, np.ndarray]:
  """{'attention_<i>': uint8 [H, W, 3]}: the teacher-forced attention of the first config.eval.tensorboard_heatmaps
  examples of `split` (the same sentences at every call, gold links outlined where the dataset has them), for
  TensorBoard. Empty when the count is 0, the model has no attention, or on processes other than 0."""
  count = int(config.eval.get('tensorboard_heatmaps', 0))
  if count <= 0 or config.model.decoder == 'none' or jax.process_index() != 0:
    return {}
  batch, rows = first_examples(task, split, count, config.eval)     # the same padded [B, S] at every call
  weights = teacher_forced_attention(model, params, batch['source'], batch['target_in'])
  images = {}
  for i in range(rows):
    images[f'attention_{i}'] = visualization.attention_pixels(
        weights[i], task.source_tokenizer.tokens(batch['source'][i]),
        task.target_tokenizer.tokens(batch['target_out'][i]),
        title=f'{split} {i}, teacher-forced', gold=batch['alignment'][i] if 'alignment' in batch else None)
  return images


def save_heatmaps(params, task, model, config, directory: str, split: str = 'test') -> list[str]:
  """One PNG per example for the first eval.num_heatmaps examples of `split`, with gold links outlined."""
  count = int(config.eval.num_heatmaps)
  if count <= 0 or config.model.decoder == 'none':
    return []
  batch = task.eval_batches(split, batch_size=count, max_examples=count)[0]
  tokens, weights = decode_batch(model, params, batch['source'], config.eval, task.max_target_length)
  gates = copy_gates(model, params, batch['source'], tokens) if copies(model) else None
  paths = []
  for i in range(count):
    source_tokens = task.source_tokenizer.tokens(batch['source'][i])
    output_tokens = task.target_tokenizer.tokens(tokens[i])
    if gates is not None:      # the pointer-generator: each output token labelled with its p_gen
      output_tokens = [f'{token} ({gate:.2f})' for token, gate in zip(output_tokens, gates[i])]
    # The gold links are those of the reference; outline them only when the output has the reference's length.
    gold = batch.get('alignment')
    same_length = len(output_tokens) == len(task.target_tokenizer.tokens(batch['target_out'][i]))
    paths.append(visualization.plot_attention(
        weights[i], source_tokens, output_tokens, os.path.join(directory, f'{split}_{i:02d}.png'),
        title=(f'{config.model.decoder} / {config.model.scorer}' + (' + copy, (p_gen) per output token'
                                                                    if gates is not None else '')
               + f': {task.source_tokenizer.decode(batch["source"][i])!r}'),
        gold=gold[i] if gold is not None and same_length else None))
  return paths
