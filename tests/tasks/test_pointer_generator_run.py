"""The pointer-generator through the translation task: copy rate and repetition in the test results, p_gen in the
explorer, and the coverage continuation (config.train.init_from) taking the parameters the two models share."""

import json
import os
import types

import jax
import numpy as np
import pytest
from flax import traverse_util

from attention_jax import attention_explorer
from attention_jax.tasks import translation
from attention_jax.training import checkpointing
from configs import test_tiny


def copy_config(data_dir, **model):
  config = test_tiny.get_config()
  config.data.data_dir = data_dir
  config.model.copy_attention = True
  config.eval.rouge = True
  config.model.update(model)
  return config


@pytest.fixture(scope='module')
def pointer_run(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('data'))
  workdir = str(tmp_path_factory.mktemp('pointer'))
  config = copy_config(data_dir)
  return data_dir, workdir, config, translation.train_and_evaluate(config, workdir)


def test_pointer_generator_reports_copy_rate_repetition_and_p_gen(pointer_run):
  _, workdir, _, results = pointer_run
  assert 0.0 < results['greedy/copy_rate'] < 1.0
  assert 0.0 <= results['greedy/repeated_trigrams'] <= 100.0
  saved = json.load(open(os.path.join(workdir, 'test_results.json')))
  assert saved['greedy/copy_rate'] == pytest.approx(results['greedy/copy_rate'])
  assert 'copy_rate' in open(os.path.join(workdir, 'report.md')).read()
  data = attention_explorer.read_explorer_data(os.path.join(workdir, 'explorer.html'))
  for sentence in data['sentences']:
    for hypothesis in sentence['hypotheses']:
      gates = np.asarray(hypothesis['p_gen'])
      assert gates.shape == (len(hypothesis['tokens']),) and ((gates > 0) & (gates < 1)).all()
  greedy_view = next(v for v in data['views'] if v['name'] == 'greedy')
  assert greedy_view['metrics']['copy_rate'] == pytest.approx(results['greedy/copy_rate'])


def test_coverage_continuation_takes_the_shared_parameters(pointer_run, tmp_path, capsys):
  data_dir, pointer_dir, pointer_config, _ = pointer_run
  config = copy_config(data_dir, scorer='coverage')
  config.train.init_from = pointer_dir
  task, model = translation.build(config)
  fresh = jax.device_get(translation.initial_state(config, task, model).params)
  warm = checkpointing.warm_start_params(fresh, pointer_dir)
  pointer_task, pointer_model = translation.build(pointer_config)
  abstract = checkpointing.abstract_like(translation.initial_state(pointer_config, pointer_task, pointer_model))
  best = jax.device_get(checkpointing.restore_for_inference(pointer_dir, abstract, 'best').params)
  saved, merged, initial = (traverse_util.flatten_dict(t, sep='/') for t in (best, warm.params, fresh))
  assert sorted(k for k in merged if k not in saved) == warm.fresh
  assert {k.rsplit('/', 1)[-1] for k in warm.fresh} == {'w_c', 'b'}       # the coverage scorer's own parameters
  assert warm.unused == [] and len(warm.loaded) == len(saved)
  for key in warm.loaded:
    np.testing.assert_array_equal(merged[key], saved[key])
  for key in warm.fresh:
    np.testing.assert_array_equal(merged[key], initial[key])

  config.train.num_steps = 2
  config.train.coverage_loss_weight = 1.0
  workdir = str(tmp_path / 'coverage')
  translation.train_and_evaluate(config, workdir)
  printed = capsys.readouterr().out
  assert f'Parameters from {pointer_dir}: {len(warm.loaded)} arrays loaded; fresh: ' in printed
  assert 'coverage_loss' in open(os.path.join(workdir, 'metrics.jsonl')).read()
  # A rerun resumes its own checkpoint instead of starting again from init_from.
  translation.train_and_evaluate(config, workdir)
  assert 'Parameters from' not in capsys.readouterr().out


def test_warm_start_refuses_other_sizes_and_missing_runs(pointer_run, tmp_path):
  data_dir, pointer_dir, _, _ = pointer_run
  config = copy_config(data_dir, hidden_dim=16)
  task, model = translation.build(config)
  params = jax.device_get(translation.initial_state(config, task, model).params)
  with pytest.raises(ValueError, match=r'parameter \S+ is \(\d+(, \d+)*\) in .* but \(\d+(, \d+)*\) in this model'):
    checkpointing.warm_start_params(params, pointer_dir)
  with pytest.raises(FileNotFoundError, match='no checkpoint there'):
    checkpointing.warm_start_params(params, str(tmp_path))
  config.train.init_from = str(tmp_path / 'missing')
  with pytest.raises(ValueError, match="init_from=.*missing' is not a directory"):
    translation.validate_config(config)


def test_copy_attention_needs_one_vocabulary(tmp_path):
  config = copy_config(str(tmp_path))
  tokenizer = lambda name: types.SimpleNamespace(to_json=lambda: {'type': 'char', 'characters': name})
  task = types.SimpleNamespace(source_tokenizer=tokenizer('ab'), target_tokenizer=tokenizer('xy'),
                               has_alignments=True)
  with pytest.raises(ValueError, match="source and target need one vocabulary.*tokenizer='sentencepiece'"):
    translation.check_task_supports(config, task)


def test_summaries_study_tables_the_runs_the_lead_baselines_and_examples(pointer_run, tmp_path):
  from attention_jax.data import make_task
  from attention_jax.metrics.summarisation import lead_baselines
  from attention_jax.studies.summaries_study import write_study
  from attention_jax.tasks.translation_inference import translate_lines

  data_dir, workdir, config, results = pointer_run
  report = write_study([('pointer A', workdir), ('pointer B', workdir)], str(tmp_path / 'study'), num_examples=3,
                       lead_lengths=(2, 4), command='python -m experiments.summaries_study ...')
  study = json.load(open(tmp_path / 'study' / 'study.json'))
  assert [row['label'] for row in study['runs']] == ['pointer A', 'pointer B']
  for key in ('rouge1', 'rougeL', 'repeated_trigrams', 'copy_rate'):
    assert study['runs'][0][key] == pytest.approx(results[f'greedy/{key}'])
  pairs = make_task(config.data).examples('test', int(config.eval.max_examples) or None)
  assert study['test_documents'] == len(pairs)
  want = lead_baselines([d for d, _ in pairs], [s for _, s in pairs], lengths=(2, 4))
  assert study['lead_baselines'].keys() == want.keys()
  for name, scores in want.items():
    assert study['lead_baselines'][name] == pytest.approx(scores)
  outputs = translate_lines([d for d, _ in pairs[:3]], workdir)
  assert [e['pointer A'] for e in study['examples']] == outputs
  text = open(report).read()
  assert f'| pointer A | {results["step"] if "step" in results else config.train.num_steps} |' in text
  assert 'lead baseline: first 4 words' in text and 'Best model by ROUGE-L: pointer A' in text
  with pytest.raises(FileNotFoundError, match='has not finished'):
    write_study([('unfinished', str(tmp_path))], str(tmp_path / 'other'))
