"""The real-corpus configs (messages En-Fr, Bible En-Es, the messages scorer comparison) run end to end for a few
steps on fixture corpora written here, and their reports carry every number they promise."""

import json
import os

import numpy as np
import pytest
import sacrebleu

from attention_jax.data import bible
from attention_jax.data import messages
from attention_jax.studies import compare
from attention_jax.studies import compare_report
from attention_jax.tasks import translation
from attention_jax.tasks import translation_eval
from attention_jax.training.metrics_writer import read_metrics
from configs import bible_en_es_cpu, bible_en_es_cpu_guided, compare_messages_cpu, messages_en_fr_cpu
from experiments.train import copy_small_outputs
from tests.data.test_messages import write_mo
from tests.helpers.fake_data import fake_message_catalog, write_fake_bible

pytestmark = pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')


@pytest.fixture(scope='module')
def messages_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('messages')
  catalog = fake_message_catalog(500, 12)
  write_mo(str(root / 'pkg' / 'fr' / 'LC_MESSAGES' / 'x.mo'), catalog)
  messages.builder('fr', str(root / 'data'), [str(root / 'pkg')]).download_and_prepare()
  return str(root / 'data')


@pytest.fixture(scope='module')
def bible_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('bible')
  english_dir, spanish_dir = write_fake_bible(str(root))
  data_dir = str(root / 'data')
  bible.builder(data_dir, lambda: bible.sword_verses(english_dir, spanish_dir,
                                                     books=['Gen', 'Ruth'])).download_and_prepare()
  return data_dir


def shrink(config, data_dir, vocab_size=60):
  """The config's structure (model kinds, decodings, report) at fixture size: a few steps of a tiny model."""
  config.data.data_dir = data_dir
  config.data.vocab_size = vocab_size
  config.model.embed_dim = 8
  config.model.hidden_dim = 8
  config.train.batch_size = 8
  config.train.num_steps = 4
  config.train.warmup_steps = 1
  config.train.log_every = 2
  config.train.eval_every = 2
  config.train.checkpoint_every = 2
  config.eval.batch_size = 16
  return config


@pytest.mark.slow
def test_messages_cpu_config_reports_greedy_and_beam_by_length(messages_dir, tmp_path):
  config = shrink(messages_en_fr_cpu.get_config(), messages_dir)
  translation.validate_config(config)
  workdir = str(tmp_path / 'run')
  results = translation.train_and_evaluate(config, workdir)
  assert config.eval.beam_size == 4
  for key in ('greedy/bleu', 'greedy/chrf', 'greedy/exact_match', 'beam4/bleu', 'beam4/chrf', 'loss'):
    assert key in results and np.isfinite(results[key]), key
  task, _ = translation.build(config)
  counts = sum(v for k, v in results.items() if k.startswith('greedy/count_len_'))
  assert counts == len(task.kept_indices('test'))
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  for text in ('| greedy |', '| beam4 |', 'BLEU by source length', 'Example translations', 'nrefs:1',
               'training took'):
    assert text in report, text
  assert 'aer' not in results        # no gold links on this corpus
  copy_small_outputs(workdir, str(tmp_path / 'results'), 'python -m experiments.train ...', 1.0)
  copied = {os.path.relpath(os.path.join(r, f), tmp_path / 'results') for r, _, fs in os.walk(tmp_path / 'results')
            for f in fs}
  assert {'report.md', 'test_results.json', 'metrics.jsonl', 'config.json', 'command.md'} <= copied
  assert not any(p.startswith(('checkpoints', 'best', 'tensorboard', 'vocab')) for p in copied), copied


@pytest.mark.slow
@pytest.mark.parametrize('config_module', [bible_en_es_cpu, bible_en_es_cpu_guided])
def test_bible_cpu_config_reports_alignment_and_gold_heatmaps(bible_dir, tmp_path, config_module):
  config = shrink(config_module.get_config(), bible_dir, vocab_size=80)
  config.eval.length_buckets = (8, 12)
  workdir = str(tmp_path / 'run')
  results = translation.train_and_evaluate(config, workdir)
  assert 0.0 <= results['aer'] <= 1.0 and 0.0 <= results['argmax_accuracy'] <= 1.0
  assert {'greedy/bleu_len_1-8', 'beam4/bleu_len_1-8'} <= set(results) or 'greedy/bleu_len_9-12' in results
  heatmaps = sorted(os.listdir(os.path.join(workdir, 'heatmaps')))
  assert heatmaps == [f'test_{i:02d}.png' for i in range(4)]
  with open(os.path.join(workdir, 'test_results.json')) as f:
    saved = json.load(f)
  assert saved['aer'] == results['aer'] and 'bleu' in saved['signatures']
  train_records = [r for r in read_metrics(workdir) if r['split'] == 'train']
  guided = bool(config.train.guided_alignment_weight)
  assert all(('alignment_loss' in r) == guided for r in train_records) and train_records


def test_scores_by_length_equal_sacrebleu_on_each_bucket():
  hypotheses = ['a b c', 'a b', 'x y z w', 'the cat sat on the mat', 'a b c d e', 'q']
  references = ['a b c', 'a c', 'x y z w', 'the cat sat on a mat', 'a b c d f', 'q r']
  lengths = [3, 2, 5, 7, 6, 9]
  scores = translation_eval.scores_by_length(hypotheses, references, lengths, (3, 6), tokenize='13a')
  buckets = {'1-3': [0, 1], '4-6': [2, 4], '7+': [3, 5]}
  for name, chosen in buckets.items():
    expected = sacrebleu.corpus_bleu([hypotheses[i] for i in chosen], [[references[i] for i in chosen]]).score
    assert scores[f'bleu_len_{name}'] == pytest.approx(expected)
    assert scores[f'count_len_{name}'] == len(chosen)
  assert scores['exact_match_len_1-3'] == 0.5 and scores['exact_match_len_7+'] == 0.0
  assert translation_eval.length_bucket_names((3, 6)) == ['1-3', '4-6', '7+']


def record(name, bleus, short=None, long=None):
  per_seed = []
  for k, bleu in enumerate(bleus):
    row = {'bleu': bleu}
    if short is not None:
      row.update({'bleu_len_1-8': short[k], 'bleu_len_17+': long[k]})
    per_seed.append(row)
  return {'name': name, 'per_seed': per_seed}


def test_contrasts_call_differences_inside_the_spread_ties():
  records = [record('a', [10.0, 11.0, 12.0], short=[20, 21, 22], long=[10, 11, 12]),
             record('b', [10.5, 11.5, 12.5], short=[19, 20, 21], long=[3, 4, 5]),
             record('c', [5.0, 5.1, 4.9])]
  tie = compare_report.contrast(records, 'a', 'b', 'bleu')
  assert tie['verdict'] == 'tie' and tie['difference'] == pytest.approx(-0.5)
  assert tie['spread'] == pytest.approx(2 * np.std([10.0, 11.0, 12.0]))
  assert compare_report.contrast(records, 'a', 'c', 'bleu')['verdict'] == 'a_ahead'
  assert compare_report.contrast(records, 'c', 'a', 'bleu')['verdict'] == 'b_ahead'
  growth = compare_report.contrast(records, 'a', 'b', 'bleu', growth=True)
  # Gap a - b: 1 on short sentences, 7 on long ones, the same for every seed: growth 6, spread 0.
  assert growth == {'difference': pytest.approx(6.0), 'spread': pytest.approx(0.0), 'verdict': 'a_ahead'}
  with pytest.raises(ValueError, match='not run'):
    compare_report.contrast(records, 'a', 'zzz', 'bleu')


@pytest.mark.slow
def test_compare_messages_cpu_config_runs_and_reports_findings(messages_dir, tmp_path):
  config = shrink(compare_messages_cpu.get_config(), messages_dir)
  config.compare.seeds = (0, 1)
  config.compare.only = 'no_attention,luong_local_p_general'
  assert len(config.compare.variants) == 8 and len(config.compare.contrasts) == 7
  report_path = compare.run_comparison(config, str(tmp_path / 'sweep'), 'python -m experiments.compare ...')
  with open(report_path) as f:
    report = f.read()
  for text in ("The papers' findings", 'not run (compare.only)', 'bleu by source length', 'chrf', 'Wall time',
               'nrefs:1'):
    assert text in report, text
  bad = compare_messages_cpu.get_config()
  bad.compare.contrasts = [dict(bad.compare.contrasts[0], b='luong_dott')]
  with pytest.raises(ValueError, match='luong_dott'):
    compare.run_comparison(bad, str(tmp_path / 'bad'))
