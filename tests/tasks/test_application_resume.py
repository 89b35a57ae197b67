"""Sentiment and digit strips train through the one loop: a run killed with `kill -9` mid-save and rerun ends
bit-identical to an uninterrupted run, under `sharded` and `pmap` on 2 simulated devices; bad configs fail with
the same clear errors as translation."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from attention_jax import tasks
from attention_jax.data import digit_strips as digit_data
from attention_jax.data import sentiment as sentiment_data
from tests.helpers.fake_data import write_fake_digits, write_fake_ratings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = ['--config.train.batch_size=8', '--config.train.num_steps=6', '--config.train.log_every=2',
         '--config.train.checkpoint_every=2', '--config.train.eval_every=6']
OVERRIDES = {
    'sentiment': ['--config=configs/sentiment.py', '--config.data.min_count=1', '--config.model.embed_dim=8',
                  '--config.model.hidden_dim=8', '--config.model.attention_dim=8', '--config.model.dropout_rate=0.2',
                  '--config.eval.num_examples_shown=1', *TRAIN],
    'digit_strips': ['--config=configs/digit_strips.py', '--config.data.num_train=64', '--config.data.num_eval=16',
                     '--config.model.conv_features=(4, 8)', '--config.model.conv_pool=(True, False)',
                     '--config.model.embed_dim=4', '--config.model.hidden_dim=8',
                     "--config.model.scorer_options={'hidden_dim': 8}", '--config.train.doubly_stochastic=0.5',
                     '--config.eval.batch_size=16', '--config.eval.num_overlays=1', *TRAIN],
}


@pytest.fixture(scope='module')
def data_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp('application_data')
  write_fake_ratings(str(root / 'ratings'))
  sentiment_data.build(str(root / 'sentiment'), str(root / 'ratings'))
  write_fake_digits(str(root / 'digits.csv.gz'))
  digit_data.build(str(root / 'digits'), str(root / 'digits.csv.gz'), counts={'train': 64, 'validation': 16,
                                                                            'test': 16})
  return {'sentiment': str(root / 'sentiment'), 'digit_strips': str(root / 'digits')}


def _two_device_env(**extra):
  return {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2', **extra}


def train_cli(module, task, data_dir, workdir, mode, kill_at=None):
  env = _two_device_env(**({'KILL_AT_STEP': str(kill_at)} if kill_at is not None else {}))
  args = [*OVERRIDES[task], f'--config.data.data_dir={data_dir}', f'--config.train.parallel={mode}',
          f'--workdir={workdir}']
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


def latest_checkpoint(workdir, out):
  """(step, data-iterator state, every saved leaf by tree path) of the newest checkpoint of workdir."""
  dump = subprocess.run([sys.executable, '-m', 'tests.helpers.dump_checkpoint', workdir, out], cwd=ROOT,
                        env=_two_device_env(), capture_output=True, text=True, timeout=300)
  assert dump.returncode == 0, dump.stderr[-3000:]
  with np.load(out) as saved:
    leaves = {key: saved[key] for key in saved.files if key != '__meta__'}
    meta = json.loads(str(saved['__meta__']))
  return meta['step'], meta['data'], leaves


@pytest.mark.slow
@pytest.mark.parametrize('task, mode', [
    ('digit_strips', 'pmap'), ('sentiment', 'sharded'), ('sentiment', 'pmap'), ('digit_strips', 'sharded'),
])
def test_killed_application_run_resumes_bit_identically(data_dirs, tmp_path, task, mode):
  uninterrupted = train_cli('experiments.train', task, data_dirs[task], str(tmp_path / 'once'), mode)
  assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
  killed_dir = str(tmp_path / 'killed')
  killed = train_cli('tests.helpers.kill_during_save', task, data_dirs[task], killed_dir, mode, kill_at=4)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  restarted = train_cli('experiments.train', task, data_dirs[task], killed_dir, mode)
  assert restarted.returncode == 0, restarted.stderr[-3000:]
  resumed_from = [line for line in restarted.stdout.splitlines() if line.startswith('Resumed from')]
  assert resumed_from and resumed_from[0].endswith(('at step 2.', 'at step 4.')), restarted.stdout[-2000:]
  step, want_data, want = latest_checkpoint(str(tmp_path / 'once'), str(tmp_path / 'once.npz'))
  got_step, got_data, got = latest_checkpoint(killed_dir, str(tmp_path / 'killed.npz'))
  assert step == got_step == 6 and got_data == want_data
  assert want.keys() == got.keys() and len(want) > 10
  for path, value in want.items():          # parameters, optimiser state, step and PRNG key
    np.testing.assert_array_equal(got[path], value, err_msg=str(path))


@pytest.mark.parametrize('task, field, value, message', [
    ('sentiment', 'train', ('parallel', 'dp'), "Unknown parallel mode 'dp'. Valid modes: sharded, pmap, single"),
    ('sentiment', 'data', ('label', 'stars'), "Unknown config.data.label 'stars'. Valid labels: binary, fine"),
    ('sentiment', 'model', ('scorer', 'dott'), "Unknown scorer 'dott'"),
    ('sentiment', 'train', ('num_steps', 0), r'config.train.num_steps=0 must be an integer >= 1'),
    ('digit_strips', 'train', ('schedule', 'cosine'), "Unknown config.train.schedule 'cosine'"),
    ('digit_strips', 'train', ('learning_rate', 0.0), 'config.train.learning_rate=0.0 must be positive'),
    ('digit_strips', 'data', ('source', 'mnist'), "Unknown config.data.source 'mnist'. Valid sources: "),
    ('digit_strips', 'model', ('decoder', 'luongg'), "Unknown decoder 'luongg'"),
])
def test_application_configs_are_validated_like_translation(task, field, value, message):
  config = tasks.get(task).default_config()
  config[field][value[0]] = value[1]
  with pytest.raises(ValueError, match=message):
    tasks.get(task).validate_config(config)


def test_application_batch_must_divide_the_devices(monkeypatch):
  import jax
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  for task in ('sentiment', 'digit_strips'):
    config = tasks.get(task).default_config()
    config.train.batch_size = 12
    with pytest.raises(ValueError, match=r'train.batch_size=12 is not divisible by the 8 devices'):
      tasks.get(task).validate_config(config)
