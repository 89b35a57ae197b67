"""The translation experiment: train with periodic evaluation and checkpoints, resume, then test.

    train_and_evaluate(config, workdir)

Rerunning the same command with the same workdir resumes from the newest complete checkpoint (state, step,
PRNG key and data-iterator position), so an interrupted run ends with the same parameters as an
uninterrupted one. Outputs in the workdir: config.json, vocab.json, metrics.jsonl, tensorboard/,
checkpoints/, best/, heatmaps/*.png, and test_results.json.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu
import tqdm
from jax.experimental import multihost_utils

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.alignment_metrics import alignment_counts, alignment_summary
from attention_jax.data import EOS_ID, PAD_ID, CharTokenizer, make_task
from attention_jax.models import build_model
from attention_jax.rouge import rouge_scores
from attention_jax.training import distributed
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.checkpointing import Checkpoints, abstract_like
from attention_jax.training.config import validate_config
from attention_jax.training.metrics_writer import MetricsWriter


class NonFiniteLossError(FloatingPointError):
  """Raised when a step's loss or gradient is NaN/Inf; nothing from that step was applied or saved."""


def build_experiment(config):
  """(task, model) for a config. With several processes, process 0 builds the dataset while the others wait."""
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      make_task(config.data)
    multihost_utils.sync_global_devices('dataset built')
  task = make_task(config.data)
  model = build_model(config.model, source_vocab_size=task.source_tokenizer.vocab_size,
                      target_vocab_size=task.target_tokenizer.vocab_size, max_source_length=task.max_source_length)
  return task, model


def initial_state(config, task, model) -> steps.TrainState:
  source = jnp.zeros((1, task.max_source_length), jnp.int32)
  target = jnp.zeros((1, task.max_target_length), jnp.int32)
  return steps.create_train_state(model, steps.make_optimizer(config.train), config.seed, source, target)


def decode(model, params, source: np.ndarray, eval_config, max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """Greedy (beam_size <= 1) or beam search -> (tokens [B, T], attention [B, T, S]) on host."""
  if eval_config.beam_size > 1:
    tokens, weights = decoding.beam_search(model, params, jnp.asarray(source), max_length=max_length,
                                           beam_size=int(eval_config.beam_size),
                                           length_penalty=float(eval_config.length_penalty))
  else:
    tokens, weights = decoding.greedy_decode(model, params, jnp.asarray(source), max_length=max_length)
  return np.asarray(tokens), np.asarray(weights)


def process_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """This process's block of rows of a global batch [B, ...] -> [B / process_count, ...]."""
  rows = len(batch['source']) // jax.process_count()
  start = jax.process_index() * rows
  return {k: v[start:start + rows] for k, v in batch.items()}


def evaluate(runner, state, task, model, split: str, config, *, with_decoding: bool) -> dict[str, float]:
  """Teacher-forced loss/perplexity/accuracy and alignment scores; with decoding also BLEU and exact match (and
  ROUGE-1/2/L when config.eval.rouge).

  The global eval batches are those of a single-process run; each process feeds its own block of rows, so
  the numbers do not depend on the number of processes.
  """
  eval_config = config.eval
  batches = task.eval_batches(split, batch_size=int(eval_config.batch_size),
                              max_examples=eval_config.max_examples or None)
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
  results = steps.summarize(sums)
  if counts is not None and config.model.decoder != 'none':
    results.update(alignment_summary(counts))
  if with_decoding:
    params = runner.get_state(state).params
    hypotheses, references = [], [target for _, target in task.examples(split, eval_config.max_examples or None)]
    for batch in batches:   # every process decodes the whole global batch: the same inputs everywhere
      tokens, _ = decode(model, params, batch['source'], eval_config, task.max_target_length)
      hypotheses += [task.target_tokenizer.decode(t) for t in tokens]
    hypotheses = hypotheses[:len(references)]
    tokenize = 'char' if isinstance(task.target_tokenizer, CharTokenizer) else '13a'
    results['bleu'] = sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score
    results['exact_match'] = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
    if eval_config.get('rouge', False):
      results.update(rouge_scores(hypotheses, references))
  return results


def save_heatmaps(state, runner, task, model, config, directory: str, split: str = 'test') -> list[str]:
  """One PNG per example for the first eval.num_heatmaps examples of `split`, with gold links outlined."""
  count = int(config.eval.num_heatmaps)
  if count <= 0 or config.model.decoder == 'none':
    return []
  batch = task.eval_batches(split, batch_size=count, max_examples=count)[0]
  tokens, weights = decode(model, runner.get_state(state).params, batch['source'], config.eval,
                           task.max_target_length)
  paths = []
  for i in range(count):
    source_tokens = task.source_tokenizer.tokens(batch['source'][i])
    output_tokens = task.target_tokenizer.tokens(tokens[i])
    # The gold links are those of the reference; outline them only when the output has the reference's length.
    gold = batch.get('alignment')
    same_length = len(output_tokens) == len(task.target_tokenizer.tokens(batch['target_out'][i]))
    paths.append(visualization.plot_attention(
        weights[i], source_tokens, output_tokens, os.path.join(directory, f'{split}_{i:02d}.png'),
        title=f'{config.model.decoder} / {config.model.scorer}: {task.source_tokenizer.decode(batch["source"][i])!r}',
        gold=gold[i] if gold is not None and same_length else None))
  return paths


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains config on its dataset in workdir (resuming if possible); returns the final test metrics."""
  distributed.initialize_from_config(config)
  validate_config(config)          # before building any data: a typo'd value fails in seconds
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  task, model = build_experiment(config)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    task.save_tokenizers(workdir)

  runner = parallel.Runner(config.train.parallel, model, label_smoothing=float(config.train.label_smoothing))
  state = runner.put_state(initial_state(config, task, model))
  local_batch = int(config.train.batch_size) // jax.process_count()
  batches = task.train_iterator(batch_size=local_batch, seed=int(config.seed),
                                process_index=jax.process_index(), process_count=jax.process_count())
  checkpoints = Checkpoints(workdir, keep=int(config.train.keep_checkpoints), best_metric='loss', best_mode='min')
  restored = checkpoints.restore_latest(abstract_like(runner.get_state(state)))
  if restored is not None:
    host_state, data_state = restored
    state = runner.put_state(host_state)
    batches.set_state(data_state)
  step = int(jax.device_get(runner.get_state(state).step))
  if restored is not None and is_chief:
    print(f'Resumed from {workdir}/checkpoints at step {step}.', flush=True)

  writer = MetricsWriter(workdir)
  num_steps = int(config.train.num_steps)
  sums, last_log_time, last_log_step = None, time.time(), step
  progress = tqdm.tqdm(total=num_steps, initial=step, disable=not is_chief, dynamic_ncols=True, desc='train')

  def check_finite(sums):
    bad = int(jax.device_get(sums['nonfinite_step'])) if sums is not None else steps.NO_NONFINITE_STEP
    if bad != steps.NO_NONFINITE_STEP:
      checkpoints.wait()
      latest = checkpoints.latest.latest_step()
      raise NonFiniteLossError(
          f'Non-finite loss or gradient at step {bad}. That update was not applied and nothing after step '
          f'{latest} was saved; the checkpoints in {workdir} are intact. Lower train.learning_rate or check the data.')

  try:
    while step < num_steps:
      state, metrics = runner.train_step(state, next(batches))
      step += 1
      sums = parallel.sum_metrics(sums, metrics)
      progress.update(1)
      if step % int(config.train.log_every) == 0 or step == num_steps:
        check_finite(sums)
        host = jax.device_get(sums)
        elapsed = max(time.time() - last_log_time, 1e-9)
        summary = steps.summarize(host)
        summary.update(grad_norm=float(host['grad_norm']), tokens_per_second=float(host['token_count']) / elapsed,
                       steps_per_second=(step - last_log_step) / elapsed)
        writer.write(step, 'train', summary)
        progress.set_postfix(loss=f'{summary["loss"]:.3f}', acc=f'{summary["token_accuracy"]:.3f}',
                             tok_s=f'{summary["tokens_per_second"]:.0f}')
        sums, last_log_time, last_log_step = None, time.time(), step
      if step % int(config.train.checkpoint_every) == 0 or step == num_steps:
        check_finite(sums)
        checkpoints.save(step, runner.get_state(state), batches.get_state())
      if step % int(config.train.eval_every) == 0 or step == num_steps:
        results = evaluate(runner, state, task, model, 'validation', config,
                           with_decoding=bool(config.eval.validation_bleu))
        writer.write(step, 'validation', results)
        checkpoints.save_best(step, runner.get_state(state), batches.get_state(), results)
        if is_chief:
          progress.write(f'step {step}: validation ' + ', '.join(f'{k} {v:.4g}' for k, v in results.items()))
    progress.close()
    checkpoints.wait()

    results = evaluate(runner, state, task, model, 'test', config, with_decoding=True)
    writer.write(step, 'test', results)
    extra_splits = [s for s in task.splits if s.startswith('test_')]
    for split in extra_splits:
      split_results = evaluate(runner, state, task, model, split, config, with_decoding=True)
      writer.write(step, split, split_results)
      results.update({f'{split}/{k}': v for k, v in split_results.items()})
    heatmaps = save_heatmaps(state, runner, task, model, config, os.path.join(workdir, 'heatmaps')) if is_chief else []
    if is_chief:
      with open(os.path.join(workdir, 'test_results.json'), 'w') as f:
        json.dump({'step': step, **results}, f, indent=2)
      print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results.items()))
      print(f'metrics: {writer.path} | tensorboard: {os.path.join(workdir, "tensorboard")} | '
            f'heatmaps: {os.path.join(workdir, "heatmaps")} ({len(heatmaps)} PNG)', flush=True)
    return results
  finally:
    progress.close()
    writer.close()
    checkpoints.wait()
    checkpoints.close()
