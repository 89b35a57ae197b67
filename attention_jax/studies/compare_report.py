"""The comparison report: report.md, results.csv, results.json, learning_curves.png, heatmaps.png and
explorer.html (the attention explorer: the same test sentences under every variant side by side, with their scores).

Per variant, mean +- std over seeds of BLEU, loss, perplexity, token accuracy, exact match, AER and argmax accuracy
(where gold alignments exist), exact match by source-length bucket, the same metrics on the longer `test_long`
split when the task has one (length generalisation), parameter count, training throughput (target tokens/s of the
vmapped step, all seeds counted) and compile time.
"""

from __future__ import annotations

import csv
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attention_jax import attention_explorer  # noqa: E402
from attention_jax.attention_explorer import EXPLORER_FILE  # noqa: E402
from attention_jax import platform_info  # noqa: E402
from attention_jax.metrics.translation import translation_signatures  # noqa: E402

REPORT_METRICS = ('bleu', 'chrf', 'exact_match', 'token_accuracy', 'loss', 'perplexity', 'aer', 'argmax_accuracy',
                  'dropped_units', 'extra_units')
BY_LENGTH_METRICS = ('bleu', 'exact_match')
EXPECTATIONS = ('tie', 'a_ahead', 'b_ahead')
EXPLORER_METRICS = ('bleu', 'chrf', 'exact_match', 'aer', 'argmax_accuracy')


def to_builtin(value):
  """JSON fallback for numpy scalars and arrays."""
  if hasattr(value, 'tolist'):
    return value.tolist()
  raise TypeError(f'Cannot serialise {type(value).__name__} to JSON.')


def summarize_variant(record: dict) -> dict:
  """Mean and std over seeds of every per-seed metric."""
  keys = sorted({k for r in record['per_seed'] for k in r})
  out = {'name': record['name'], 'parameters': record['parameter_count'],
         'tokens_per_second': record['tokens_per_second'], 'compile_seconds': record['compile_seconds']}
  for key in keys:
    values = np.array([r.get(key, np.nan) for r in record['per_seed']], np.float64)
    out[f'{key}_mean'], out[f'{key}_std'] = float(np.nanmean(values)), float(np.nanstd(values))
  return out


def _fmt(mean, std):
  if mean is None or not np.isfinite(mean):
    return 'n/a'
  return f'{mean:.3f} ± {std:.3f}'


def write_report(records: list[dict], config, task, workdir: str, command: str) -> str:
  """report.md + results.csv + results.json + learning_curves.png + heatmaps.png in workdir."""
  summaries = [summarize_variant(r) for r in records]
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'summaries': summaries, 'records': [{k: v for k, v in r.items() if k != 'heatmap'} for r in records]},
              f, indent=1, default=to_builtin)
  columns = sorted({k for s in summaries for k in s} - {'name'})
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=['name', *columns])
    writer.writeheader()
    writer.writerows(summaries)

  seeds = len(records[0]['seeds']) if records else 0
  lines = [f'# Attention variants on `{task.name}`', '',
           f'{len(records)} variants x {seeds} seeds (vmapped), {config.train.num_steps} steps of batch '
           f'{config.train.batch_size}, same data order for all. Mean ± std over seeds on the test split.', '',
           f'Regenerate: `{command}`', '']
  wall = [r['wall_seconds'] for r in records if r.get('wall_seconds')]
  if wall:
    lines += [f'Wall time: {sum(wall) / 60:.1f} min for the whole sweep (training and evaluating every seed), '
              f'{min(wall) / 60:.1f}-{max(wall) / 60:.1f} min a variant; {platform_info.describe()}.', '']
  if any('bleu_mean' in s for s in summaries):
    signatures = translation_signatures(tokenize='char' if config.data.get('tokenizer') == 'char' else '13a')
    lines += [f'sacrebleu signatures: BLEU `{signatures["bleu"]}`, chrF `{signatures["chrf"]}`.', '']
  shown = [m for m in REPORT_METRICS if any(f'{m}_mean' in s for s in summaries)]
  lines += ['| variant | ' + ' | '.join(shown) + ' | params | tokens/s | compile s |',
            '|---' * (len(shown) + 4) + '|']
  for s in summaries:
    cells = [_fmt(s.get(f'{m}_mean'), s.get(f'{m}_std')) for m in shown]
    tps = f'{s["tokens_per_second"]:.0f}' if s['tokens_per_second'] else 'n/a'
    lines.append(f'| {s["name"]} | ' + ' | '.join(cells) + f' | {s["parameters"]} | {tps} | {s["compile_seconds"]:.1f} |')
  for metric in BY_LENGTH_METRICS:
    lines += _by_length_table(summaries, metric)
  contrasts = list(config.compare.get('contrasts', ()))
  if contrasts:
    lines += ['', '## The papers\' findings at this scale', '',
              'A difference no larger than the two variants\' seed spreads (std a + std b) is a tie. A growth '
              'claim compares the per-seed gap a - b in the longest source-length bucket with the gap in the '
              'shortest.', '',
              '| claim | a | b | metric | a - b | spread | measured | paper | reproduces |',
              '|---|---|---|---|---|---|---|---|---|']
    lines += [_contrast_row(records, contrast) for contrast in contrasts]
  if any('long_exact_match_mean' in s for s in summaries):
    long_shown = [m for m in REPORT_METRICS if any(f'long_{m}_mean' in s for s in summaries)]
    lines += ['', '## Length generalisation: test_long (inputs longer than any seen in training)', '',
              '| variant | ' + ' | '.join(long_shown) + ' |', '|---' * (len(long_shown) + 1) + '|']
    for s in summaries:
      lines.append(f'| {s["name"]} | ' + ' | '.join(_fmt(s.get(f'long_{m}_mean'), s.get(f'long_{m}_std'))
                                                 for m in long_shown) + ' |')
  lines += ['', '![learning curves](learning_curves.png)', '', '![attention of the same test examples](heatmaps.png)', '']
  _plot_curves(records, os.path.join(workdir, 'learning_curves.png'))
  _plot_heatmaps(records, task, os.path.join(workdir, 'heatmaps.png'))
  if write_explorer(records, summaries, task, os.path.join(workdir, EXPLORER_FILE)):
    lines += ['Interactive, every variant side by side: [explorer.html](explorer.html) (open it in a browser; hover '
              'an output token to see its weights).', '']
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path


def write_explorer(records: list[dict], summaries: list[dict], task, path: str) -> str | None:
  """The attention explorer of the variants' decoded test examples (seed 0 of each), one view per variant with
  its mean scores over seeds; gold links are outlined where an output equals its reference. None if no variant
  has attention."""
  shown = [r for r in records if r['heatmap']]
  if not shown:
    return None
  count = len(shown[0]['heatmap']['source'])
  batch = task.eval_batches('test', batch_size=count, max_examples=count)[0]
  means = {s['name']: s for s in summaries}
  views = [{'name': r['name'], 'metrics': {m: means[r['name']].get(f'{m}_mean') for m in EXPLORER_METRICS
                                           if f'{m}_mean' in means[r['name']]}} for r in shown]
  sentences = []
  for i in range(count):
    source_tokens = task.source_tokenizer.tokens(batch['source'][i])
    reference = task.target_tokenizer.tokens(batch['target_out'][i])
    hypotheses = []
    for record in shown:
      if list(record['heatmap']['source'][i]) != batch['source'][i].tolist():
        raise ValueError(f'Variant {record["name"]!r} was decoded on other test examples than the task gives now; '
                         'rerun it (delete its runs/<name> directory).')
      tokens = task.target_tokenizer.tokens(record['heatmap']['tokens'][i])
      gold = batch['alignment'][i] if 'alignment' in batch and tokens == reference else None
      hypotheses.append(attention_explorer.explorer_hypothesis(
          record['name'], 'seed 0', tokens, record['heatmap']['weights'][i], source_length=len(source_tokens),
          gold_TS=gold))
    sentences.append(attention_explorer.explorer_sentence(
        source_tokens, hypotheses, reference=task.target_tokenizer.decode(batch['target_out'][i]),
        source_text=task.source_tokenizer.decode(batch['source'][i])))
  return attention_explorer.write_explorer(path, sentences, title=f'Attention variants on {task.name}', views=views)


def _by_length_table(summaries, metric: str) -> list[str]:
  prefix = f'{metric}_len_'
  names = sorted({k[len(prefix):-5] for s in summaries for k in s if k.startswith(prefix) and k.endswith('_mean')},
                 key=lambda name: int(name.split('-')[0].rstrip('+')))
  if not names:
    return []
  counts = next((s for s in summaries if f'count_len_{names[0]}_mean' in s), {})
  header = ' | '.join(f'{n} ({counts.get(f"count_len_{n}_mean", 0):.0f})' for n in names)
  lines = ['', f'## {metric} by source length (tokens incl. EOS; test examples in each bucket)', '',
           f'| variant | {header} |', '|---' * (len(names) + 1) + '|']
  for s in summaries:
    lines.append(f'| {s["name"]} | ' + ' | '.join(_fmt(s.get(f'{prefix}{n}_mean'), s.get(f'{prefix}{n}_std'))
                                               for n in names) + ' |')
  return lines


def _per_seed(record: dict, key: str) -> np.ndarray:
  return np.array([r.get(key, np.nan) for r in record['per_seed']], np.float64)


def contrast(records: list[dict], a: str, b: str, metric: str, growth: bool = False) -> dict:
  """a - b on `metric` over seeds, and whether the gap is inside the seed spread.

  With growth, the per-seed gap (a - b) on `<metric>_len_<longest bucket>` minus that on the shortest bucket.

  Returns:
    {'difference': mean, 'spread': std a + std b (growth: std of the per-seed growth), 'verdict': 'tie' |
    'a_ahead' | 'b_ahead'} (for loss-like metrics 'ahead' still means larger).
  """
  by_name = {r['name']: r for r in records}
  missing = sorted({a, b} - set(by_name))
  if missing:
    raise ValueError(f'Contrast names variants {missing} that were not run. Variants: {", ".join(by_name)}.')
  if growth:
    prefix = f'{metric}_len_'
    buckets = sorted({k[len(prefix):] for r in by_name[a]['per_seed'] for k in r if k.startswith(prefix)},
                     key=lambda name: int(name.split('-')[0].rstrip('+')))
    gap = lambda key: _per_seed(by_name[a], key) - _per_seed(by_name[b], key)
    values = gap(prefix + buckets[-1]) - gap(prefix + buckets[0])
    difference, spread = float(np.mean(values)), float(np.std(values))
  else:
    va, vb = _per_seed(by_name[a], metric), _per_seed(by_name[b], metric)
    difference, spread = float(np.mean(va) - np.mean(vb)), float(np.std(va) + np.std(vb))
  verdict = 'tie' if abs(difference) <= spread else ('a_ahead' if difference > 0 else 'b_ahead')
  return {'difference': difference, 'spread': spread, 'verdict': verdict}


def check_contrasts(contrasts, variant_names) -> None:
  """ValueError unless every contrast names two of the variants, a metric and a valid expectation."""
  for spec in contrasts:
    spec = dict(spec)
    missing = sorted({spec.get('a'), spec.get('b')} - set(variant_names))
    if missing or not spec.get('metric') or not spec.get('claim'):
      raise ValueError(f'Contrast {spec} needs a claim, a metric and variants a and b among '
                       f'{", ".join(variant_names)} (unknown: {missing}).')
    if spec.get('expect') not in EXPECTATIONS:
      raise ValueError(f'Contrast expect={spec.get("expect")!r}; valid: {", ".join(EXPECTATIONS)}.')


def _contrast_row(records, spec) -> str:
  spec = dict(spec)
  if not {spec['a'], spec['b']} <= {r['name'] for r in records}:
    return f'| {spec["claim"]} | {spec["a"]} | {spec["b"]} | {spec["metric"]} | not run (compare.only) | | | {spec["expect"]} | |'
  result = contrast(records, spec['a'], spec['b'], spec['metric'], bool(spec.get('growth', False)))
  metric = spec['metric'] + (' gap growth, longest vs shortest' if spec.get('growth') else '')
  return (f'| {spec["claim"]} | {spec["a"]} | {spec["b"]} | {metric} | {result["difference"]:+.3f} | '
          f'{result["spread"]:.3f} | {result["verdict"]} | {spec["expect"]} | '
          f'{"yes" if result["verdict"] == spec["expect"] else "no"} |')


def _plot_curves(records, path):
  fig, ax = plt.subplots(figsize=(7, 4))
  for record in records:
    steps_axis = [p['step'] for p in record['curve']]
    losses = np.array([p['loss'] for p in record['curve']])
    mean = losses.mean(1)
    line, = ax.plot(steps_axis, mean, label=record['name'])
    ax.fill_between(steps_axis, losses.min(1), losses.max(1), color=line.get_color(), alpha=0.2)
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel('training loss (mean, min-max over seeds)')
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _plot_heatmaps(records, task, path):
  shown = [r for r in records if r['heatmap']]
  if not shown:
    return
  examples = len(shown[0]['heatmap']['source'])
  fig, axes = plt.subplots(examples, len(shown), figsize=(2.2 * len(shown), 2.0 * examples), squeeze=False)
  for col, record in enumerate(shown):
    for row in range(examples):
      ax = axes[row][col]
      src = task.source_tokenizer.tokens(record['heatmap']['source'][row])
      out = task.target_tokenizer.tokens(record['heatmap']['tokens'][row])
      ax.imshow(np.asarray(record['heatmap']['weights'][row])[:len(out), :len(src)], cmap='viridis', vmin=0, vmax=1,
                aspect='auto')
      ax.set_xticks(range(len(src)), src, fontsize=5)
      ax.set_yticks(range(len(out)), out, fontsize=5)
      if row == 0:
        ax.set_title(record['name'], fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
