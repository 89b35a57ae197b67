"""Variant comparison: vmapped seeds == separate runs, resumable sweeps, the report."""

import functools
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from attention_jax import attention_explorer
from attention_jax.data import make_task
from attention_jax.models import build_model
from attention_jax.studies import compare
from attention_jax.tasks import translation
from attention_jax.training import parallel
from attention_jax.training import seeds as seeds_lib
from attention_jax.training import steps
from configs import test_tiny


def tiny_compare_config(data_dir):
  config = test_tiny.get_config()
  config.data.data_dir = data_dir
  config.train.num_steps = 8
  config.train.log_every = 4
  config.train.checkpoint_every = 4
  config.compare = ml_collections.ConfigDict()
  config.compare.seeds = (0, 1)
  config.compare.length_buckets = (3, 5)
  config.compare.num_heatmaps = 2
  config.compare.variants = [{'name': 'none', 'decoder': 'none'}, {'name': 'dot', 'scorer': 'dot'}]
  config.compare.only = ''
  return config


@pytest.mark.slow
def test_seed_k_of_the_vmapped_run_equals_a_single_run_with_seed_k():
  config = translation.default_config()
  config.train.warmup_steps = 0
  model = build_model(dict(encoder='bigru', decoder='bahdanau', scorer='additive', embed_dim=8, hidden_dim=8,
                           dropout_rate=0.3), source_vocab_size=9, target_vocab_size=9, max_source_length=6)
  optimizer = steps.make_optimizer(config.train)
  rng = np.random.default_rng(0)
  batches = [{'source': rng.integers(3, 9, (4, 6)).astype(np.int32),
              'target_in': rng.integers(1, 9, (4, 5)).astype(np.int32),
              'target_out': rng.integers(2, 9, (4, 5)).astype(np.int32)} for _ in range(3)]
  example = (batches[0]['source'][:1], batches[0]['target_in'][:1])
  states = seeds_lib.init_seed_states(model, optimizer, [3, 7], *example)
  train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
  multi_step = parallel.Runner('single', train_step, vmap_seeds=True).train_step
  single_step = jax.jit(train_step)
  single = steps.create_train_state(model, optimizer, 7, *example)
  for batch in batches:
    states, multi_metrics = multi_step(states, batch)
    single, single_metrics = single_step(single, batch)
  seed_7 = seeds_lib.select_seed(states, 1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), seed_7.params, single.params)
  np.testing.assert_allclose(multi_metrics['loss_sum'][1], single_metrics['loss_sum'], rtol=1e-5)
  seed_3 = seeds_lib.select_seed(states, 0)
  assert not np.allclose(seed_3.params['cell']['output']['kernel'], seed_7.params['cell']['output']['kernel'])


@pytest.mark.slow
def test_sweep_writes_report_and_is_resumable(tmp_path, monkeypatch):
  data_dir, workdir = str(tmp_path / 'data'), str(tmp_path / 'sweep')
  config = tiny_compare_config(data_dir)

  # Interrupt the second variant at its 6th step (after its step-4 checkpoint), as a kill would.
  real = compare.make_seed_runner
  calls = {'dot': 0}

  def interrupted(config, model):
    runner = real(config, model)
    if model.decoder != 'bahdanau' or model.scorer != 'dot':
      return runner
    step = runner.train_step

    def wrapped(states, batch):
      calls['dot'] += 1
      if calls['dot'] == 6:
        raise KeyboardInterrupt('simulated kill')
      return step(states, batch)
    runner.train_step = wrapped
    return runner

  monkeypatch.setattr(compare, 'make_seed_runner', interrupted)
  with pytest.raises(KeyboardInterrupt):
    compare.run_comparison(config, workdir)
  assert os.path.exists(os.path.join(workdir, 'runs', 'none', 'result.json'))
  assert not os.path.exists(os.path.join(workdir, 'runs', 'dot', 'result.json'))
  finished_at = os.path.getmtime(os.path.join(workdir, 'runs', 'none', 'result.json'))
  monkeypatch.setattr(compare, 'make_seed_runner', real)

  report = compare.run_comparison(config, workdir, command='python -m experiments.compare ...')
  assert os.path.getmtime(os.path.join(workdir, 'runs', 'none', 'result.json')) == finished_at   # skipped
  with open(os.path.join(workdir, 'runs', 'dot', 'result.json')) as f:
    resumed = json.load(f)
  # The resumed variant equals an uninterrupted run of it.
  fresh = compare.train_variant(config, make_task(config.data), {'name': 'dot', 'scorer': 'dot'},
                                str(tmp_path / 'fresh'))
  np.testing.assert_allclose([p['loss'] for p in resumed['curve']], [p['loss'] for p in fresh['curve']], rtol=1e-6)
  for a, b in zip(resumed['per_seed'], fresh['per_seed']):
    assert a['loss'] == pytest.approx(b['loss'], rel=1e-6)

  text = open(report).read()
  for name in ('none', 'dot'):
    assert f'| {name} |' in text
  assert 'Length generalisation' in text and '± ' in text
  for name in ('results.csv', 'results.json', 'learning_curves.png', 'heatmaps.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, 'results.json')) as f:
    summaries = {s['name']: s for s in json.load(f)['summaries']}
  per_seed = [r['exact_match'] for r in resumed['per_seed']]
  assert summaries['dot']['exact_match_mean'] == pytest.approx(np.mean(per_seed))
  assert summaries['dot']['exact_match_std'] == pytest.approx(np.std(per_seed))
  assert np.isnan(summaries['none'].get('aer_mean', np.nan))
  # The explorer: the variants with attention side by side (seed 0's outputs), each with its mean scores.
  explorer = attention_explorer.read_explorer_data(os.path.join(workdir, 'explorer.html'))
  assert [v['name'] for v in explorer['views']] == ['dot'] and '(explorer.html)' in text
  assert explorer['views'][0]['metrics']['bleu'] == pytest.approx(summaries['dot']['bleu_mean'])
  assert len(explorer['sentences']) == 2
  for i, sentence in enumerate(explorer['sentences']):
    hypothesis, = sentence['hypotheses']
    t, s = len(hypothesis['tokens']), len(sentence['source'])
    np.testing.assert_allclose(hypothesis['weights'], np.asarray(resumed['heatmap']['weights'][i])[:t, :s], atol=5e-5)


def test_bad_variants_fail_clearly(tmp_path):
  config = tiny_compare_config(str(tmp_path))
  with pytest.raises(ValueError, match="sets unknown model field 'scorrer'"):
    compare.variant_config(config, {'name': 'x', 'scorrer': 'dot'})
  with pytest.raises(ValueError, match="sets unknown train field 'guided_weight'"):
    compare.variant_config(config, {'name': 'x', 'train.guided_weight': 0.1})
  merged = compare.variant_config(config, {'name': 'x', 'locality': 'local_p', 'train.guided_alignment_weight': 0.3})
  assert merged.model.locality == 'local_p' and merged.train.guided_alignment_weight == 0.3
  assert config.train.guided_alignment_weight == 0.0          # the shared config is untouched
  config.compare.only = 'dot,nope'
  with pytest.raises(ValueError, match=r"unknown variants \['nope'\]"):
    compare.run_comparison(config, str(tmp_path / 'w'))
