"""Compare attention variants: same data, same budget, same seeds; seeds vmapped; a report with pictures.

    run_comparison(config, workdir)

config.compare.variants is a list of {'name': ..., **model overrides, 'train.<field>': ...} applied on top of the
config (model fields by name, training options such as 'train.guided_alignment_weight' with their group). For each
variant, all config.compare.seeds train together in one compiled step on the same batches: the one training loop
(training/loop.py) over a state whose leaves carry a leading seed axis (training/seeds.py), run by a Runner with
`vmap_seeds=True`. Each finished variant leaves workdir/runs/<name>/result.json and is skipped when the sweep is
rerun; an unfinished one resumes from its last checkpoint (states of every seed + data position), and its
learning curve is read back from its metrics.jsonl. The report is written by compare_report.py.
"""

from __future__ import annotations

import copy
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax import scoring
from attention_jax.data import make_task
from attention_jax.models import build_model
from attention_jax.studies.compare_report import REPORT_METRICS, check_contrasts, summarize_variant, to_builtin, write_report
from attention_jax.tasks import translation
from attention_jax.tasks import translation_eval
from attention_jax.training import loop
from attention_jax.training import seeds as seeds_lib
from attention_jax.training import steps
from attention_jax.training.metrics_writer import read_metrics
from attention_jax.training.sequence_losses import summarize_sequence_metrics


def variant_config(config, variant: dict):
  """config with the variant's overrides applied: model fields by name, training options as 'train.<field>'
  (unknown fields fail like any config typo).

  The shared config.model.scorer_options (e.g. {'hidden_dim': 64}) apply to the variants whose scorer takes
  them, so one sweep can set the size of every parameterised scorer; a variant's own scorer_options win.
  """
  merged = copy.deepcopy(config)
  with merged.unlocked():
    for key, value in variant.items():
      if key == 'name':
        continue
      if key.startswith('train.'):         # a training option (e.g. 'train.guided_alignment_weight': 0.1)
        field = key[len('train.'):]
        if field not in merged.train:
          raise ValueError(f'Variant {variant.get("name")!r} sets unknown train field {field!r}. Valid fields: '
                           f'{", ".join(sorted(merged.train.keys()))}.')
        merged.train[field] = value
        continue
      if key not in merged.model:
        raise ValueError(f'Variant {variant.get("name")!r} sets unknown model field {key!r}. Valid fields: '
                         f'{", ".join(sorted(merged.model.keys()))} (or train.<field> for a training option).')
      merged.model[key] = value
    if 'scorer_options' not in variant and 'scorer' in merged.model:     # tasks without a scorer have none
      accepted = scoring.get(merged.model.scorer).options
      merged.model.scorer_options = {k: v for k, v in dict(merged.model.scorer_options).items() if k in accepted}
  return merged


def make_seed_runner(config, model):
  """The runner of the translation step vmapped over the seed axis of the state, in config.train.parallel mode
  ('sharded': the seed axis spread over the devices, see parallel.Runner)."""
  return translation.make_runner(config, model, vmap_seeds=True)


def _summarize_seeds(host: dict) -> dict[str, float]:
  """Training summary of seed-stacked sums [K]: the mean over seeds plus each seed's loss."""
  per_seed = [summarize_sequence_metrics(jax.tree.map(lambda x: x[k], host)) for k in range(len(host['loss_sum']))]
  summary = {key: float(np.mean([s[key] for s in per_seed])) for key in per_seed[0]}
  summary.update({f'loss_seed{k}': s['loss'] for k, s in enumerate(per_seed)})
  return summary


def _learning_curve(run_dir: str, num_seeds: int) -> list[dict]:
  """[{'step', 'loss': [per seed]}] from the run's metrics.jsonl; a step logged again after a resume keeps the
  later record (the same numbers: the resumed run retraces the steps after its checkpoint exactly)."""
  by_step = {r['step']: r for r in read_metrics(run_dir) if r['split'] == 'train'}
  return [{'step': step, 'loss': [by_step[step][f'loss_seed{k}'] for k in range(num_seeds)]}
          for step in sorted(by_step)]


def train_variant(config, task, variant: dict, run_dir: str) -> dict:
  """Trains every seed of one variant together, evaluates each seed, returns the variant's record."""
  started = time.perf_counter()
  cfg = variant_config(config, variant)
  translation.check_task_supports(cfg, task)
  model = build_model(cfg.model, source_vocab_size=task.source_tokenizer.vocab_size,
                      target_vocab_size=task.target_tokenizer.vocab_size, max_source_length=task.max_source_length)
  seed_list = [int(s) for s in config.compare.seeds]
  if int(cfg.train.checkpoint_every) % int(cfg.train.log_every):
    # Checkpoints fall on log steps so a resumed learning curve averages the same steps as an uninterrupted one.
    raise ValueError(f'train.checkpoint_every={cfg.train.checkpoint_every} must be a multiple of '
                     f'train.log_every={cfg.train.log_every} in comparisons.')
  source = jnp.zeros((1, task.max_source_length), jnp.int32)
  target = jnp.zeros((1, task.max_target_length), jnp.int32)
  runner = make_seed_runner(cfg, model)
  states = runner.put_state(seeds_lib.init_seed_states(model, steps.make_optimizer(cfg.train), seed_list, source,
                                                       target))
  # Every variant and seed sees the same batches in the same order (the data order is config.seed).
  batches = task.train_iterator(batch_size=int(cfg.train.batch_size), seed=int(config.seed),
                                batch_multiple=jax.device_count())
  run = loop.train(states, runner, batches, cfg.train, run_dir, summarize=_summarize_seeds, best_metric=None)
  states = run.state

  eval_runner = translation.make_runner(cfg, model, mode='single')
  edges = list(config.compare.length_buckets)
  per_seed = []
  for k in range(len(seed_list)):
    state = seeds_lib.select_seed(states, k)
    result = translation_eval.evaluate(eval_runner, state, task, model, 'test', cfg, with_decoding=True,
                                       length_buckets=edges)
    if 'test_long' in task.splits:
      long = translation_eval.evaluate(eval_runner, state, task, model, 'test_long', cfg, with_decoding=True)
      result.update({f'long_{key}': value for key, value in long.items()})
    per_seed.append(result)
  heatmap = None
  if cfg.model.decoder != 'none':
    batch = task.eval_batches('test', batch_size=int(config.compare.num_heatmaps),
                              max_examples=int(config.compare.num_heatmaps))[0]
    tokens, weights = translation_eval.decode_batch(model, seeds_lib.select_seed(states, 0).params, batch['source'],
                                                    cfg.eval, task.max_target_length)
    heatmap = {'source': batch['source'].tolist(), 'tokens': tokens.tolist(), 'weights': weights.tolist()}
  parameter_count = int(sum(np.prod(x.shape[1:]) for x in jax.tree.leaves(states.params)))
  return {'name': variant['name'], 'overrides': {k: v for k, v in variant.items() if k != 'name'},
          'seeds': seed_list, 'per_seed': per_seed, 'curve': _learning_curve(run_dir, len(seed_list)),
          'parameter_count': parameter_count, 'compile_seconds': run.first_step_seconds,
          'tokens_per_second': run.steady_units / run.steady_seconds if run.steady_seconds else None,
          'heatmap': heatmap, 'wall_seconds': time.perf_counter() - started}


def run_comparison(config, workdir: str, command: str = '') -> str:
  """Trains (or skips, if finished) every variant and writes the report; returns the report's path."""
  os.makedirs(workdir, exist_ok=True)
  loop.write_run_config(config, workdir)
  names = [v['name'] for v in config.compare.variants]
  if len(set(names)) != len(names):
    raise ValueError(f'Variant names must be unique; got {names}.')
  only = [n.strip() for n in config.compare.get('only', '').split(',') if n.strip()]
  unknown = sorted(set(only) - set(names))
  if unknown:
    raise ValueError(f'compare.only names unknown variants {unknown}. Variants: {", ".join(names)}.')
  check_contrasts(config.compare.get('contrasts', ()), names)
  for variant in config.compare.variants:
    translation.validate_config(variant_config(config, variant))    # a bad variant fails now, not after the others trained
  task = make_task(config.data)     # after the checks: a bad sweep fails before any data is built
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
      json.dump(record, f, default=to_builtin)
    os.replace(tmp, result_path)     # atomic: a killed sweep never leaves a half-written result
    records.append(record)
  return write_report(records, config, task, workdir, command)
