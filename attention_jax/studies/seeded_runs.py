"""Variants of any task's config, each trained with several seeds one run after another, and a report of their
test metrics (mean +- std over seeds) with seeded contrasts.

    run_seeded_variants(config, workdir, command)     # -> path of workdir/report.md

The config is a task config (config.experiment picks the task) plus
  config.sweep.variants   ({'name': ..., '<model field>': value, 'train.<field>': value}, ...), applied like the
                          comparison's variants (attention_jax.studies.compare.variant_config)
  config.sweep.seeds      the seeds; each (variant, seed) is one run of the task with config.seed = seed
  config.sweep.metrics    the test metrics shown (each with its mean +- std over seeds)
  config.sweep.contrasts  ({'claim', 'a', 'b', 'metric', 'expect': 'a_ahead' | 'b_ahead' | 'tie'}, ...): a
                          difference inside the summed seed spreads is a tie
Unlike the translation comparison (seeds vmapped in one compiled step), any task works here: each run is
`tasks.run(config, workdir/runs/<variant>/seed<k>)`, so it resumes like any run, and a finished run (its
results.json) is read back instead of retrained when the command is rerun. The report copies each variant's
attention view of its first seed (attention_<variant>.html / .png) next to report.md and results.json.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from attention_jax import platform_info
from attention_jax import tasks
from attention_jax.studies.compare import variant_config
from attention_jax.studies.compare_report import check_contrasts, contrast, to_builtin
from attention_jax.training import loop

ATTENTION_VIEWS = ('attention.html', 'attention.png')


def seed_config(config, variant: dict, seed: int):
  """The task config of one run: the variant's overrides, config.seed = seed, and no sweep group."""
  cfg = variant_config(config, variant)
  with cfg.unlocked():
    cfg.seed = int(seed)
    del cfg['sweep']
  return cfg


def check_sweep(config) -> list[str]:
  """ValueError for duplicate or missing variant names, no seeds, or a contrast naming an unknown variant or
  expectation; every variant's config is validated by its task. Returns the variant names."""
  names = [dict(v).get('name') for v in config.sweep.variants]
  if not names or None in names or len(set(names)) != len(names):
    raise ValueError(f'config.sweep.variants needs one or more variants with unique names; got {names}.')
  if not list(config.sweep.seeds):
    raise ValueError('config.sweep.seeds is empty: give at least one seed.')
  check_contrasts(config.sweep.get('contrasts', ()), names)
  task = tasks.get(config.get('experiment', 'translation'))
  for variant in config.sweep.variants:
    task.validate_config(seed_config(config, dict(variant), int(config.sweep.seeds[0])))
  return names


def run_seeded_variants(config, workdir: str, command: str = '') -> str:
  """Trains (or reads back) every (variant, seed) run, then writes report.md and results.json; returns the
  report's path."""
  check_sweep(config)         # a bad variant fails before anything trains
  os.makedirs(workdir, exist_ok=True)
  loop.write_run_config(config, workdir)
  records = []
  for variant in map(dict, config.sweep.variants):
    per_seed, wall = [], []
    for seed in config.sweep.seeds:
      run_dir = os.path.join(workdir, 'runs', variant['name'], f'seed{int(seed)}')
      result_path = os.path.join(run_dir, 'results.json')
      if not os.path.exists(result_path):
        print(f'[{variant["name"]}] seed {int(seed)}: training', flush=True)
        started = time.perf_counter()
        tasks.run(seed_config(config, variant, int(seed)), run_dir)
        wall.append(time.perf_counter() - started)
      with open(result_path) as f:
        per_seed.append(json.load(f)['test'])
    first_run = os.path.join(workdir, 'runs', variant['name'], f'seed{int(config.sweep.seeds[0])}')
    for view in ATTENTION_VIEWS:
      if os.path.exists(os.path.join(first_run, view)):
        stem, ext = os.path.splitext(view)
        shutil.copy2(os.path.join(first_run, view), os.path.join(workdir, f'{stem}_{variant["name"]}{ext}'))
    records.append({'name': variant['name'], 'overrides': {k: v for k, v in variant.items() if k != 'name'},
                    'seeds': [int(s) for s in config.sweep.seeds], 'per_seed': per_seed,
                    'wall_seconds_this_invocation': wall})
  return write_report(records, config, workdir, command)


def summarize(record: dict) -> dict[str, float]:
  """{'<metric>_mean', '<metric>_std'} over the seeds of one variant (population std, as in the comparison)."""
  keys = sorted({k for result in record['per_seed'] for k in result})
  out = {}
  for key in keys:
    values = np.array([r.get(key, np.nan) for r in record['per_seed']], np.float64)
    out[f'{key}_mean'], out[f'{key}_std'] = float(np.mean(values)), float(np.std(values))
  return out


def write_report(records: list[dict], config, workdir: str, command: str) -> str:
  """report.md (a table of config.sweep.metrics, mean +- std over seeds, and the contrasts) and results.json."""
  summaries = [{'name': r['name'], **summarize(r)} for r in records]
  metrics = list(config.sweep.metrics)
  lines = [f'# {config.get("experiment", "translation")}: {len(records)} variants x {len(config.sweep.seeds)} seeds',
           '', f'Regenerate: `{command}`' if command else '', '',
           f'Machine: {platform_info.describe()}. Test split; mean +- std over seeds '
           f'{", ".join(str(int(s)) for s in config.sweep.seeds)}.', '',
           '| variant | overrides | ' + ' | '.join(metrics) + ' |', '|---' * (len(metrics) + 2) + '|']
  for record, summary in zip(records, summaries):
    overrides = ', '.join(f'{k}={v}' for k, v in record['overrides'].items()) or '(the config)'
    cells = [f'{summary[f"{m}_mean"]:.3f} +- {summary[f"{m}_std"]:.3f}' if f'{m}_mean' in summary else '-'
             for m in metrics]
    lines.append(f'| {record["name"]} | {overrides} | ' + ' | '.join(cells) + ' |')
  contrasts = list(config.sweep.get('contrasts', ()))
  one_seed = len(config.sweep.seeds) < 2
  if contrasts:
    rule = ('One seed per variant: there is no seed spread to judge a difference by, so no verdict is given.'
            if one_seed else 'A difference no larger than the summed seed std of the two variants is a tie.')
    rule += (' a_ahead / b_ahead name the variant with the larger value of the metric: for an error rate or a loss,'
             ' the worse one.')
    lines += ['', '## Contrasts', '', rule,
              '', '| claim | a | b | metric | a - b | spread | verdict | expected | as expected |',
              '|---|---|---|---|---|---|---|---|---|']
    for spec in map(dict, contrasts):
      result = contrast(records, spec['a'], spec['b'], spec['metric'])
      verdict = 'none (one seed)' if one_seed else result['verdict']
      matches = '-' if one_seed else ('yes' if result['verdict'] == spec['expect'] else 'no')
      lines.append(f'| {spec["claim"]} | {spec["a"]} | {spec["b"]} | {spec["metric"]} | {result["difference"]:+.4f} | '
                   f'{result["spread"]:.4f} | {verdict} | {spec["expect"]} | {matches} |')
  views = [f'[{r["name"]}](attention_{r["name"]}.html)' for r in records
           if os.path.exists(os.path.join(workdir, f'attention_{r["name"]}.html'))]
  if views:
    lines += ['', 'Attention of the first seed of each variant: ' + ', '.join(views) + '.']
  report = os.path.join(workdir, 'report.md')
  with open(report, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'records': records, 'summaries': summaries}, f, indent=1, default=to_builtin)
  return report
