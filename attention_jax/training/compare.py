"""Compare attention variants: same data, same budget, same seeds; seeds vmapped; a report with pictures.

    run_comparison(config, workdir)

config.compare.variants is a list of {'name': ..., **model overrides} applied on top of config.model. For each
variant, all config.compare.seeds train together in one compiled step (see seeds.py) on the same batches.
Each finished variant leaves workdir/runs/<name>/result.json and is skipped when the sweep is rerun; an
unfinished one resumes from its last checkpoint (states of every seed + data position).

The report (workdir/report.md, results.csv, results.json, learning_curves.png, heatmaps.png) gives, per
variant, mean +- std over seeds of BLEU, loss, perplexity, token accuracy, exact match, AER and argmax accuracy
(where gold alignments exist), exact match by source-length bucket, the same metrics on the longer
`test_long` split when the task has one (length generalisation), parameter count, training throughput
(target tokens/s of the vmapped step, all seeds counted) and compile time.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from attention_jax import scoring  # noqa: E402
from attention_jax.data import make_task  # noqa: E402
from attention_jax.models import build_model  # noqa: E402
from attention_jax.training import parallel  # noqa: E402
from attention_jax.training import seeds as seeds_lib  # noqa: E402
from attention_jax.training import steps  # noqa: E402
from attention_jax.training.checkpointing import abstract_like  # noqa: E402
from attention_jax.training.config import validate_config  # noqa: E402
from attention_jax.training.loop import decode, evaluate  # noqa: E402

REPORT_METRICS = ('bleu', 'exact_match', 'token_accuracy', 'loss', 'perplexity', 'aer', 'argmax_accuracy')


def variant_config(config, variant: dict):
  """config with the variant's model overrides applied (unknown fields fail like any config typo).

  The shared config.model.scorer_options (e.g. {'hidden_dim': 64}) apply to the variants whose scorer takes
  them, so one sweep can set the size of every parameterised scorer; a variant's own scorer_options win.
  """
  merged = copy.deepcopy(config)
  with merged.unlocked():
    for key, value in variant.items():
      if key == 'name':
        continue
      if key not in merged.model:
        raise ValueError(f'Variant {variant.get("name")!r} sets unknown model field {key!r}. Valid fields: '
                         f'{", ".join(sorted(merged.model.keys()))}.')
      merged.model[key] = value
    if 'scorer_options' not in variant:
      accepted = scoring.get(merged.model.scorer).options
      merged.model.scorer_options = {k: v for k, v in dict(merged.model.scorer_options).items() if k in accepted}
  return merged


def _length_buckets(task, split: str, max_examples, edges) -> np.ndarray:
  lengths = [len(task.source_tokenizer.encode(src)) for src, _ in task.examples(split, max_examples)]
  return np.digitize(lengths, edges, right=True)


def _bucket_names(edges) -> list[str]:
  lows = [1] + [e + 1 for e in edges]
  highs = list(edges) + [None]
  return [f'{lo}-{hi}' if hi is not None else f'{lo}+' for lo, hi in zip(lows, highs)]


def _exact_by_bucket(task, model, params, split, config, edges) -> dict[str, float]:
  eval_config = config.eval
  examples = task.examples(split, eval_config.max_examples or None)
  hypotheses = []
  for batch in task.eval_batches(split, batch_size=int(eval_config.batch_size), max_examples=eval_config.max_examples or None):
    tokens, _ = decode(model, params, batch['source'], eval_config, task.max_target_length)
    hypotheses += [task.target_tokenizer.decode(t) for t in tokens]
  correct = np.array([h == ref for h, (_, ref) in zip(hypotheses, examples)], np.float32)
  buckets = _length_buckets(task, split, eval_config.max_examples or None, edges)
  out = {}
  for index, name in enumerate(_bucket_names(edges)):
    chosen = buckets == index
    if chosen.any():
      out[f'exact_len_{name}'] = float(correct[chosen].mean())
  return out


def train_variant(config, task, variant: dict, run_dir: str) -> dict:
  """Trains every seed of one variant together, evaluates each seed, returns the variant's record."""
  cfg = variant_config(config, variant)
  model = build_model(cfg.model, source_vocab_size=task.source_tokenizer.vocab_size,
                      target_vocab_size=task.target_tokenizer.vocab_size, max_source_length=task.max_source_length)
  seed_list = [int(s) for s in config.compare.seeds]
  optimizer = steps.make_optimizer(cfg.train)
  source = jnp.zeros((1, task.max_source_length), jnp.int32)
  target = jnp.zeros((1, task.max_target_length), jnp.int32)
  states = seeds_lib.init_seed_states(model, optimizer, seed_list, source, target)
  # Every variant and seed sees the same batches in the same order (the data order is config.seed).
  batches = task.train_iterator(batch_size=int(cfg.train.batch_size), seed=int(config.seed))
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, 'checkpoints')),
                                  options=ocp.CheckpointManagerOptions(max_to_keep=1))
  step, curve = 0, []
  if manager.latest_step() is not None:
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(states)), data=ocp.args.JsonRestore(),
        curve=ocp.args.JsonRestore()))
    states, step, curve = restored['state'], manager.latest_step(), restored['curve']['points']
    batches.set_state(restored['data'])
  train_step = seeds_lib.make_multi_seed_train_step(model, float(cfg.train.label_smoothing))

  num_steps, log_every = int(cfg.train.num_steps), int(cfg.train.log_every)
  if int(cfg.train.checkpoint_every) % log_every:
    # Checkpoints fall on log steps so a resumed learning curve averages the same steps as an uninterrupted one.
    raise ValueError(f'train.checkpoint_every={cfg.train.checkpoint_every} must be a multiple of '
                     f'train.log_every={log_every} in comparisons.')
  compile_seconds, trained_tokens, timed_seconds = None, 0.0, 0.0
  sums = None
  while step < num_steps:
    batch = next(batches)
    start = time.perf_counter()
    states, metrics = train_step(states, batch)
    if compile_seconds is None:
      jax.block_until_ready(metrics)
      compile_seconds = time.perf_counter() - start
    else:
      timed_seconds += time.perf_counter() - start
      trained_tokens += float((batch['target_out'] != 0).sum()) * len(seed_list)
    step += 1
    sums = parallel.sum_metrics(sums, metrics)
    if step % log_every == 0 or step == num_steps:
      host = jax.device_get(sums)
      curve.append({'step': step, 'loss': (host['loss_sum'] / np.maximum(host['token_count'], 1)).tolist()})
      sums = None
      bad = np.asarray(host['nonfinite_step'])
      if (bad != steps.NO_NONFINITE_STEP).any():
        raise FloatingPointError(f'Variant {variant["name"]!r}: non-finite loss at step {int(bad.min())}.')
    if step % int(cfg.train.checkpoint_every) == 0 and step < num_steps:
      manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(states),
                                                 data=ocp.args.JsonSave(batches.get_state()),
                                                 curve=ocp.args.JsonSave({'points': curve})))
  jax.block_until_ready(states)
  manager.wait_until_finished()
  manager.close()

  runner = parallel.Runner('single', model)
  edges = list(config.compare.length_buckets)
  per_seed = []
  for k in range(len(seed_list)):
    state = seeds_lib.select_seed(states, k)
    result = evaluate(runner, state, task, model, 'test', cfg, with_decoding=True)
    result.update(_exact_by_bucket(task, model, state.params, 'test', cfg, edges))
    if 'test_long' in task.splits:
      long = evaluate(runner, state, task, model, 'test_long', cfg, with_decoding=True)
      result.update({f'long_{key}': value for key, value in long.items()})
    per_seed.append(result)
  heatmap = None
  if cfg.model.decoder != 'none':
    batch = task.eval_batches('test', batch_size=int(config.compare.num_heatmaps),
                              max_examples=int(config.compare.num_heatmaps))[0]
    tokens, weights = decode(model, seeds_lib.select_seed(states, 0).params, batch['source'], cfg.eval,
                             task.max_target_length)
    heatmap = {'source': batch['source'].tolist(), 'tokens': tokens.tolist(), 'weights': weights.tolist()}
  parameter_count = int(sum(np.prod(x.shape[1:]) for x in jax.tree.leaves(states.params)))
  return {'name': variant['name'], 'overrides': {k: v for k, v in variant.items() if k != 'name'},
          'seeds': seed_list, 'per_seed': per_seed, 'curve': curve, 'parameter_count': parameter_count,
          'compile_seconds': compile_seconds, 'tokens_per_second': trained_tokens / timed_seconds if timed_seconds else None,
          'heatmap': heatmap}


def _to_builtin(value):
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
              f, indent=1, default=_to_builtin)
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
  shown = [m for m in REPORT_METRICS if any(f'{m}_mean' in s for s in summaries)]
  lines += ['| variant | ' + ' | '.join(shown) + ' | params | tokens/s | compile s |',
            '|---' * (len(shown) + 4) + '|']
  for s in summaries:
    cells = [_fmt(s.get(f'{m}_mean'), s.get(f'{m}_std')) for m in shown]
    tps = f'{s["tokens_per_second"]:.0f}' if s['tokens_per_second'] else 'n/a'
    lines.append(f'| {s["name"]} | ' + ' | '.join(cells) + f' | {s["parameters"]} | {tps} | {s["compile_seconds"]:.1f} |')
  bucket_keys = sorted({k[:-5] for s in summaries for k in s if k.startswith('exact_len_') and k.endswith('_mean')},
                       key=lambda k: int(k.split('_')[2].split('-')[0].rstrip('+')))
  if bucket_keys:
    lines += ['', '## Exact match by source length (characters incl. EOS)', '',
              '| variant | ' + ' | '.join(k.replace('exact_len_', '') for k in bucket_keys) + ' |',
              '|---' * (len(bucket_keys) + 1) + '|']
    for s in summaries:
      lines.append(f'| {s["name"]} | ' + ' | '.join(_fmt(s.get(f'{k}_mean'), s.get(f'{k}_std')) for k in bucket_keys) + ' |')
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
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path


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


def run_comparison(config, workdir: str, command: str = '') -> str:
  """Trains (or skips, if finished) every variant and writes the report; returns the report's path."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  task = make_task(config.data)
  names = [v['name'] for v in config.compare.variants]
  if len(set(names)) != len(names):
    raise ValueError(f'Variant names must be unique; got {names}.')
  only = [n.strip() for n in config.compare.get('only', '').split(',') if n.strip()]
  unknown = sorted(set(only) - set(names))
  if unknown:
    raise ValueError(f'compare.only names unknown variants {unknown}. Variants: {", ".join(names)}.')
  for variant in config.compare.variants:
    validate_config(variant_config(config, variant))    # a bad variant fails now, not after the others trained
  records = []
  for variant in config.compare.variants:
    if only and variant['name'] not in only:
      continue
    variant = dict(variant)
    run_dir = os.path.join(workdir, 'runs', variant['name'])
    result_path = os.path.join(run_dir, 'result.json')
    if os.path.exists(result_path):
      print(f'[{variant["name"]}] finished earlier, skipping', flush=True)
      with open(result_path) as f:
        records.append(json.load(f))
      continue
    print(f'[{variant["name"]}] training {len(config.compare.seeds)} seeds together', flush=True)
    record = train_variant(config, task, variant, run_dir)
    summary = summarize_variant(record)
    print(f'[{variant["name"]}] ' + ', '.join(f'{m} {summary[f"{m}_mean"]:.3f}' for m in REPORT_METRICS
                                              if f'{m}_mean' in summary), flush=True)
    tmp = result_path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(record, f, default=_to_builtin)
    os.replace(tmp, result_path)     # atomic: a killed sweep never leaves a half-written result
    records.append(record)
  return write_report(records, config, task, workdir, command)
