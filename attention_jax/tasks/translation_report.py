"""The test report of a trained translation model: scores, scores by source length, alignment, pictures, examples.

    results = test_and_report(runner, state, task, model, config, workdir)

On the test split (and any test_* split): teacher-forced loss / perplexity / token accuracy, the attention's
alignment error rate and argmax accuracy against the gold links (datasets that carry them); greedy decoding and,
when config.eval.beam_size > 1, beam search with the length penalty: BLEU and chrF (sacrebleu, signatures
printed) and exact match, overall and per source-length bucket (config.eval.length_buckets). Writes into the
workdir: test_results.json (flat, every number), report.md, heatmaps/*.png -- the teacher-forced attention of
test examples with the gold links outlined where the dataset has them, else the attention of the decoded output --
and explorer.html, the attention explorer of the same examples: the teacher-forced reference (with the gold links),
the greedy output and the beam's n best side by side, with the test scores of each.
"""

from __future__ import annotations

import copy
import json
import os

import jax
import numpy as np

from attention_jax import attention_explorer
from attention_jax.attention_explorer import EXPLORER_FILE
from attention_jax import platform_info
from attention_jax import visualization
from attention_jax.data import CharTokenizer
from attention_jax.metrics.translation import translation_signatures
from attention_jax.tasks import translation_eval
from attention_jax.training.metrics_writer import MetricsWriter, read_metrics

# Decoded scores the explorer and the report show where a run has them (ROUGE, repetition, copy rate: summaries).
DECODED_SHOWN = ('bleu', 'chrf', 'exact_match', 'rouge1', 'rouge2', 'rougeL', 'repeated_trigrams', 'copy_rate')
REPORTED = ('bleu', 'chrf', 'exact_match', 'loss', 'perplexity', 'token_accuracy', 'aer', 'argmax_accuracy')


def _tokenize(task) -> str:
  return 'char' if isinstance(task.target_tokenizer, CharTokenizer) else '13a'


def _decoding_config(config, beam_size: int):
  eval_config = copy.deepcopy(config.eval)
  with eval_config.unlocked():
    eval_config.beam_size = beam_size
  return eval_config


def _decodings(config) -> list[tuple[str, int]]:
  """[(label, beam size)]: greedy, then the config's beam when it is wider than 1."""
  beam = int(config.eval.beam_size)
  return [('greedy', 1)] + ([(f'beam{beam}', beam)] if beam > 1 else [])


def evaluate_split(runner, state, task, model, split: str, config) -> tuple[dict, dict]:
  """Teacher-forced scores plus every decoding of `split`.

  Returns:
    (flat results {'<metric>' teacher-forced/alignment, '<decoding>/<metric>' decoded, by length too},
     {decoding label: hypotheses [N]}) with the references under the key 'references'.
  """
  edges = list(config.eval.get('length_buckets', ()))
  results = translation_eval.evaluate(runner, state, task, model, split, config, with_decoding=False)
  params = runner.get_state(state).params
  texts = {'references': [target for _, target in task.examples(split, config.eval.max_examples or None)]}
  for label, beam in _decodings(config):
    eval_config = _decoding_config(config, beam)
    gates = []
    texts[label] = translation_eval.decode_split(model, params, task, split, eval_config, gates=gates)
    scores = translation_eval.decoded_scores(task, split, texts[label], texts['references'], eval_config, edges)
    scores.update(translation_eval.copy_rate(gates))
    results.update({f'{label}/{k}': v for k, v in scores.items()})
  return results, texts


def save_alignment_heatmaps(runner, state, task, model, config, directory: str, split: str = 'test') -> list[str]:
  """PNGs of config.eval.num_heatmaps test examples: the teacher-forced attention over the reference with the gold
  links outlined when the dataset has them, else the attention of the (config.eval) decoded output."""
  count = int(config.eval.num_heatmaps)
  if count <= 0 or config.model.decoder == 'none':
    return []
  is_chief = jax.process_index() == 0
  if not task.has_alignments:
    return (translation_eval.save_heatmaps(runner.get_state(state).params, task, model, config, directory, split)
            if is_chief else [])
  # The teacher-forced step is collective (every process calls it); process 0 plots its rows.
  batch = translation_eval.process_rows(task.eval_batches(split, batch_size=count, max_examples=count)[0])
  _, attention = runner.eval_step(state, batch)
  if not is_chief:
    return []
  paths = []
  for i in range(min(count, len(batch['source']))):
    source_tokens = task.source_tokenizer.tokens(batch['source'][i])
    target_tokens = task.target_tokenizer.tokens(batch['target_out'][i])
    title = (f'{config.model.decoder} / {config.model.scorer}, teacher-forced; red: gold links\n'
             f'{task.source_tokenizer.decode(batch["source"][i])[:90]!r}')
    paths.append(visualization.plot_attention(attention[i], source_tokens, target_tokens,
                                              os.path.join(directory, f'{split}_{i:02d}.png'), title=title,
                                              gold=batch['alignment'][i]))
  return paths




def save_explorer(runner, state, task, model, config, path: str, results: dict, split: str = 'test') -> str | None:
  """The attention explorer of the first config.eval.num_heatmaps examples of `split` (returns its path, or None when
  there is nothing to show): views 'teacher-forced' (the reference, with the gold links where the dataset has them),
  'greedy' and 'beam<K>' (its K best), each with its scores from `results` (evaluate_split's flat dict)."""
  count = int(config.eval.num_heatmaps)
  if count <= 0 or config.model.decoder == 'none':
    return None
  if jax.process_index() != 0:
    return None
  batch, rows = translation_eval.first_examples(task, split, count, config.eval)   # evaluation's decoders reused
  params = runner.get_state(state).params
  forced = translation_eval.teacher_forced_attention(model, params, batch['source'], batch['target_in'])
  decoded = {label: translation_eval.decode_n_best(model, params, batch['source'], _decoding_config(config, beam),
                                                   task.max_target_length, max(beam, 1))
             for label, beam in _decodings(config)}
  copies = translation_eval.copies(model)
  forced_gates = translation_eval.copy_gates(model, params, batch['source'], batch['target_out']) if copies else None
  decoded_gates = {label: translation_eval.copy_gates(
      model, params, np.repeat(batch['source'], tokens.shape[1], 0), tokens.reshape(-1, tokens.shape[-1])
  ).reshape(tokens.shape) if copies else None for label, (tokens, _, _) in decoded.items()}   # [B, n, T]
  forced_metrics = ('aer', 'argmax_accuracy', 'perplexity', 'token_accuracy')
  views = [{'name': 'teacher-forced', 'metrics': {k: results[k] for k in forced_metrics if k in results}}]
  views += [{'name': label, 'metrics': {k: results[f'{label}/{k}'] for k in DECODED_SHOWN
                                        if f'{label}/{k}' in results}} for label in decoded]
  sentences = []
  for i in range(rows):
    source_tokens = task.source_tokenizer.tokens(batch['source'][i])
    reference_tokens = task.target_tokenizer.tokens(batch['target_out'][i])
    hypotheses = [attention_explorer.explorer_hypothesis(
        'teacher-forced', 'reference', reference_tokens, forced[i], source_length=len(source_tokens),
        gold_TS=batch['alignment'][i] if 'alignment' in batch else None,
        p_gen_T=None if forced_gates is None else forced_gates[i])]
    for label, (tokens, weights, scores) in decoded.items():
      gates = None if decoded_gates[label] is None else decoded_gates[label][i]
      hypotheses += [attention_explorer.explorer_hypothesis(
          label, str(k + 1), task.target_tokenizer.tokens(tokens[i, k]), weights[i, k],
          source_length=len(source_tokens), score=float(scores[i, k]),
          p_gen_T=None if gates is None else gates[k]) for k in range(tokens.shape[1])]
    sentences.append(attention_explorer.explorer_sentence(
        source_tokens, hypotheses, reference=task.target_tokenizer.decode(batch['target_out'][i]),
        source_text=task.source_tokenizer.decode(batch['source'][i])))
  title = f'{config.model.encoder} + {config.model.decoder} ({config.model.scorer}) on {task.name}: {split} examples'
  return attention_explorer.write_explorer(path, sentences, title=title, views=views)


def _training_minutes(workdir: str) -> float | None:
  """Minutes from the first to the last logged training step (metrics.jsonl), or None."""
  times = [r['time'] for r in read_metrics(workdir) if r['split'] == 'train']
  return (max(times) - min(times)) / 60 if len(times) > 1 else None


def _cell(text: str) -> str:
  return text.replace('|', '\\|').replace('\n', ' ')


def _report(config, task, step: int, by_split: dict, texts: dict, heatmaps: list[str], workdir: str,
            explorer: str | None = None) -> str:
  decodings = [label for label, _ in _decodings(config)]
  signatures = translation_signatures(tokenize=_tokenize(task))
  minutes = _training_minutes(workdir)
  lines = [f'# {config.model.encoder} + {config.model.decoder} ({config.model.scorer}) on `{task.name}`', '',
           f'Step {step} of {config.train.num_steps} (batches of {config.train.batch_size} '
           f'{config.train.batch_type}); ' + (f'training took {minutes:.1f} min (first to last logged step) on '
                                              if minutes is not None else 'measured on ') +
           f'{platform_info.describe()}.', '',
           f'sacrebleu signatures: BLEU `{signatures["bleu"]}`, chrF `{signatures["chrf"]}`.', '']
  for split, results in by_split.items():
    lines += [f'## {split}', '', '| decoding | BLEU | chrF | exact match |', '|---|---|---|---|']
    for label in decodings:
      lines.append(f'| {label} | {results[f"{label}/bleu"]:.2f} | {results[f"{label}/chrf"]:.2f} | '
                   f'{results[f"{label}/exact_match"]:.3f} |')
    extra = [k for k in DECODED_SHOWN[3:] if f'{decodings[0]}/{k}' in results]
    if extra:
      lines += ['', '| decoding | ' + ' | '.join(extra) + ' |', '|---' * (len(extra) + 1) + '|']
      lines += [f'| {label} | ' + ' | '.join(f'{results[f"{label}/{k}"]:.2f}' if k != 'copy_rate' else
                                             f'{results[f"{label}/{k}"]:.3f}' for k in extra) + ' |'
                for label in decodings]
    forced = [k for k in REPORTED[3:] if k in results]
    lines += ['', 'Teacher-forced: ' + ', '.join(f'{k} {results[k]:.4g}' for k in forced) + '.', '']
    buckets = [k[len(f'{decodings[0]}/bleu_len_'):] for k in results if k.startswith(f'{decodings[0]}/bleu_len_')]
    if buckets:
      lines += ['BLEU by source length (tokens incl. EOS; examples in each bucket):', '',
                '| decoding | ' + ' | '.join(f'{b} ({results[f"{decodings[0]}/count_len_{b}"]:.0f})'
                                            for b in buckets) + ' |', '|---' * (len(buckets) + 1) + '|']
      for label in decodings:
        lines.append(f'| {label} | ' + ' | '.join(f'{results[f"{label}/bleu_len_{b}"]:.2f}' for b in buckets)
                     + ' |')
      lines.append('')
  count = int(config.eval.get('num_examples', 8))
  if count and texts:
    lines += ['## Example translations (the first test examples)', '',
              '| source | reference | ' + ' | '.join(decodings) + ' |', '|---' * (len(decodings) + 2) + '|']
    for i, (source, _) in enumerate(task.examples('test', count)):
      lines.append(f'| {_cell(source)} | {_cell(texts["references"][i])} | '
                   + ' | '.join(_cell(texts[label][i]) for label in decodings) + ' |')
    lines.append('')
  if heatmaps or explorer:
    lines += ['## Attention', '']
    if explorer:
      lines += [f'Interactive: [{EXPLORER_FILE}]({EXPLORER_FILE}) (open it in a browser; hover an output token).', '']
    lines += [f'![{os.path.basename(p)}](heatmaps/{os.path.basename(p)})' for p in heatmaps]
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def test_and_report(runner, state, task, model, config, workdir: str, step: int) -> dict[str, float]:
  """Scores the test split(s), writes test_results.json, report.md and heatmaps/ in workdir (process 0), logs the
  scores to metrics.jsonl; returns the flat test results ('<split>/...' keys for splits other than 'test')."""
  is_chief = jax.process_index() == 0
  writer = MetricsWriter(workdir)
  by_split, texts = {}, {}
  try:
    for split in ['test'] + [s for s in task.splits if s.startswith('test_')]:
      results, split_texts = evaluate_split(runner, state, task, model, split, config)
      writer.write(step, split, results)
      by_split[split] = results
      texts = texts or split_texts
  finally:
    writer.close()
  flat = dict(by_split['test'])
  for split, results in by_split.items():
    if split != 'test':
      flat.update({f'{split}/{k}': v for k, v in results.items()})
  heatmaps = save_alignment_heatmaps(runner, state, task, model, config, os.path.join(workdir, 'heatmaps'))
  explorer = save_explorer(runner, state, task, model, config, os.path.join(workdir, EXPLORER_FILE), flat)
  if is_chief:
    with open(os.path.join(workdir, 'test_results.json'), 'w') as f:
      json.dump({'step': step, 'signatures': translation_signatures(tokenize=_tokenize(task)),
                 'platform': platform_info.describe(), **flat}, f, indent=2)
    report = _report(config, task, step, by_split, texts, heatmaps, workdir, explorer)
    shown = {k: v for k, v in flat.items() if '_len_' not in k and '/' in k or k in REPORTED}
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in shown.items()))
    print(f'report: {report} | metrics: {writer.path} | heatmaps: {os.path.join(workdir, "heatmaps")} '
          f'({len(heatmaps)} PNG) | attention explorer: {explorer}', flush=True)
  return flat
