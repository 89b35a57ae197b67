"""End-to-end runs of the tiny config: outputs, resume, kill -9 + restart equality, NaN stop, multi-host,
config flags, translate."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from attention_jax.training import checkpointing
from attention_jax.training.loop import NonFiniteLossError, build_experiment, initial_state, train_and_evaluate
from attention_jax.training.metrics_writer import read_metrics
from configs import test_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


def tiny_config(data_dir, **train):
  config = test_tiny.get_config()
  config.data.data_dir = data_dir
  for key, value in train.items():
    config.train[key] = value
  return config


def final_params(config, workdir):
  task, model = build_experiment(config)
  abstract = checkpointing.abstract_like(initial_state(config, task, model))
  state, data_state = checkpointing.Checkpoints(workdir, best_metric=None).restore_latest(abstract)
  return jax.device_get(state), data_state


def run_cli(args, **kwargs):
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.Popen([sys.executable, '-m', *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


def test_run_writes_metrics_heatmaps_and_resumes(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(data_dir)
  results = train_and_evaluate(config, workdir)
  for name in ('config.json', 'vocab.json', 'metrics.jsonl', 'test_results.json', 'heatmaps/test_00.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  records = read_metrics(workdir)
  assert [r['step'] for r in records if r['split'] == 'train'] == [5, 10, 15, 20]
  assert {'validation', 'test', 'test_long'} <= {r['split'] for r in records}
  for key in ('loss', 'perplexity', 'token_accuracy', 'bleu', 'aer', 'argmax_accuracy', 'exact_match'):
    assert np.isfinite(results[key]), key
  np.testing.assert_allclose(results['perplexity'], np.exp(results['loss']), rtol=1e-5)
  state, data_state = final_params(config, workdir)
  assert int(state.step) == 20 and data_state == {'next_index': 20}
  # Asking for more steps continues from step 20 instead of starting over.
  config.train.num_steps = 25
  train_and_evaluate(config, workdir)
  assert [r['step'] for r in read_metrics(workdir) if r['split'] == 'train'][-2:] == [20, 25]
  assert int(final_params(config, workdir)[0].step) == 25


def test_killed_run_restarts_to_the_same_parameters(data_dir, tmp_path):
  overrides = [f'--config.data.data_dir={data_dir}', '--config.train.num_steps=60',
               '--config.train.checkpoint_every=5', '--config.train.eval_every=1000', '--config.eval.num_heatmaps=0']
  straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
  command = ['experiments.train', '--config=configs/test_tiny.py', *overrides]
  process = run_cli([*command, f'--workdir={killed}'])
  deadline = time.time() + 120
  checkpoints = os.path.join(killed, 'checkpoints')
  while time.time() < deadline:
    done = [d for d in (os.listdir(checkpoints) if os.path.isdir(checkpoints) else []) if d.isdigit()]
    if any(int(d) >= 15 for d in done):
      break
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  steps_saved = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  assert steps_saved and steps_saved[-1] < 60, f'the run finished before it was killed: {steps_saved}'
  for args in ([*command, f'--workdir={killed}'], [*command, f'--workdir={straight}']):
    finished = run_cli(args)
    out, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err[-3000:]
  config = tiny_config(data_dir)
  a, data_a = final_params(config, killed)
  b, data_b = final_params(config, straight)
  assert int(a.step) == int(b.step) == 60 and data_a == data_b
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)


def test_nonfinite_loss_stops_the_run_naming_the_step(data_dir, tmp_path):
  workdir = str(tmp_path / 'nan')
  config = tiny_config(data_dir, learning_rate=1e30, warmup_steps=0, grad_clip_norm=0.0, checkpoint_every=1,
                       log_every=1, num_steps=50)
  with pytest.raises(NonFiniteLossError, match=r'Non-finite loss or gradient at step (\d+)') as error:
    train_and_evaluate(config, workdir)
  bad_step = int(error.value.args[0].split('at step ')[1].split('.')[0])
  state, _ = final_params(config, workdir)
  assert int(state.step) == bad_step                    # the last good state was saved, the bad step was not
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_config_overrides_and_typos(tmp_path):
  bad = run_cli(['experiments.train', '--config=configs/test_tiny.py', '--config.model.scorr=dot',
                 f'--workdir={tmp_path}'])
  _, err = bad.communicate(timeout=120)
  assert bad.returncode != 0 and 'scorr' in err
  bad = run_cli(['experiments.train', '--config=configs/test_tiny.py', '--config.model.scorer=luong',
                 f'--workdir={tmp_path}', f'--config.data.data_dir={tmp_path}'])
  _, err = bad.communicate(timeout=120)
  assert bad.returncode != 0 and 'Unknown scorer' in err and 'Valid scorers' in err
  bad = run_cli(['experiments.train', '--config=configs/test_tiny.py', '--config.train.parallel=dp',
                 f'--workdir={tmp_path}', f'--config.data.data_dir={tmp_path}'])
  _, err = bad.communicate(timeout=120)
  assert bad.returncode != 0 and "Unknown parallel mode 'dp'. Valid modes: sharded, pmap, single" in err


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.parametrize('mode', ['sharded', pytest.param('pmap', marks=pytest.mark.slow)])
def test_two_processes_train_in_lock_step(data_dir, tmp_path, mode):
  port = str(_free_port())
  workdir = str(tmp_path / 'multihost')
  workers = [run_cli(['tests.helpers.multihost_worker', port, str(i), workdir, data_dir, mode]) for i in range(2)]
  outputs = [w.communicate(timeout=300) for w in workers]
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  lines = [next(l for l in out.splitlines() if l.startswith('PROCESS')) for out, _ in outputs]
  assert {l.split()[1] for l in lines} == {'0', '1'} and all('OF 2 STEP 8' in l for l in lines)
  assert len({l.split('CHECKSUM')[1] for l in lines}) == 1, lines     # same parameters and loss on both
