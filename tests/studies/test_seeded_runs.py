"""Seeded runs of config variants (any task): each run's config, the report's means and contrasts, rerun skips."""

import json
import os

import numpy as np
import pytest

from attention_jax import tasks
from attention_jax.data import sentiment as sentiment_data
from attention_jax.studies import seeded_runs
from configs import sentiment_pooling
from tests.helpers.fake_data import write_fake_ratings


def smoke_config(data_dir):
  config = sentiment_pooling.get_config('smoke')
  config.data.data_dir = data_dir
  config.data.min_count = 1
  return config


def test_seed_config_applies_the_variant_and_the_seed():
  config = sentiment_pooling.get_config()
  cfg = seeded_runs.seed_config(config, dict(config.sweep.variants[2]), 7)
  assert (cfg.seed, cfg.model.pooling, cfg.model.num_hops, cfg.train.hop_penalty_weight) == (7, 'structured', 4, 1.0)
  assert 'sweep' not in cfg and config.seed == 0 and config.model.pooling == 'context_query'


@pytest.mark.parametrize('change, message', [
    (lambda c: c.sweep.update(seeds=()), 'seeds is empty'),
    (lambda c: c.sweep.update(variants=({'name': 'a'}, {'name': 'a'})), 'unique names'),
    (lambda c: c.sweep.update(contrasts=({'claim': 'x', 'a': 'hops4', 'b': 'nope', 'metric': 'accuracy',
                                          'expect': 'tie'},)), "unknown: \\['nope'\\]"),
    (lambda c: c.sweep.update(variants=({'name': 'bad', 'num_hops': 3},), contrasts=()), "needs config.model.pooling='structured'"),
])
def test_bad_sweeps_fail_before_training(change, message):
  config = sentiment_pooling.get_config()
  change(config)
  with pytest.raises(ValueError, match=message):
    seeded_runs.check_sweep(config)


def test_sweep_trains_every_seed_reports_means_and_skips_finished_runs(tmp_path, monkeypatch):
  ratings = str(tmp_path / 'ratings')
  write_fake_ratings(ratings)
  sentiment_data.build(str(tmp_path / 'data'), ratings)
  config = smoke_config(str(tmp_path / 'data'))
  workdir = str(tmp_path / 'sweep')
  report = seeded_runs.run_seeded_variants(config, workdir, 'python -m experiments.seeded_runs ...')
  results = json.load(open(os.path.join(workdir, 'results.json')))
  names = [r['name'] for r in results['records']]
  assert names == ['context_query', 'hops4']
  for record, summary in zip(results['records'], results['summaries']):
    accuracies = [r['accuracy'] for r in record['per_seed']]
    assert len(accuracies) == 2
    np.testing.assert_allclose(summary['accuracy_mean'], np.mean(accuracies))
    np.testing.assert_allclose(summary['accuracy_std'], np.std(accuracies))
    for seed in (0, 1):
      run_config = json.load(open(os.path.join(workdir, 'runs', record['name'], f'seed{seed}', 'config.json')))
      assert run_config['seed'] == seed
      assert run_config['model']['num_hops'] == (4 if record['name'] == 'hops4' else 1)
  # Two seeds of one variant start from different weights: different test losses.
  losses = [r['loss'] for r in results['records'][0]['per_seed']]
  assert losses[0] != losses[1]
  assert 'hop_penalty' in results['records'][1]['per_seed'][0]
  text = open(report).read()
  assert '| hops4 | pooling=structured, num_hops=4, train.hop_penalty_weight=1.0 |' in text
  assert 'attention_hops4.html' in text and os.path.exists(os.path.join(workdir, 'attention_hops4.png'))
  assert '| Lin et al.: several hops beat one attention vector | hops4 | context_query | accuracy |' in text

  # A rerun trains nothing and writes the same report.
  monkeypatch.setattr(tasks, 'run', lambda *a, **k: pytest.fail('a finished run was trained again'))
  assert open(seeded_runs.run_seeded_variants(config, workdir, 'python -m experiments.seeded_runs ...')).read() == text


def test_one_seed_gives_no_verdict(tmp_path):
  config = sentiment_pooling.get_config()
  with config.unlocked():
    config.sweep.seeds = (0,)
  records = [{'name': name, 'overrides': {}, 'seeds': [0], 'per_seed': [{'accuracy': value}],
              'wall_seconds_this_invocation': []}
             for name, value in (('context_query', 0.79), ('hops1', 0.78), ('hops4', 0.70), ('hops8', 0.81))]
  text = open(seeded_runs.write_report(records, config, str(tmp_path), 'cmd')).read()
  assert 'no verdict is given' in text and text.count('| none (one seed) |') == len(config.sweep.contrasts)
  assert '| a_ahead | yes |' not in text and '| b_ahead |' not in text
  with config.unlocked():
    config.sweep.seeds = (0, 1)
  for record in records:
    record['per_seed'] = record['per_seed'] * 2
  text = open(seeded_runs.write_report(records, config, str(tmp_path), 'cmd')).read()
  assert 'none (one seed)' not in text and '| a_ahead |' in text      # hops8 - context_query = +0.02, spread 0
