"""User errors through the real entry points: two lines on stderr, exit status 2, the traceback only on request."""

import os
import subprocess
import sys

import pytest

from experiments import user_errors

ROOT = __file__.rsplit('/tests/', 1)[0]


def run(module, *args, stdin='', env_extra=None):
  env = {key: value for key, value in os.environ.items() if key != user_errors.VERBOSE_ENV}
  env.update({'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu', **(env_extra or {})})
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
                        text=True, timeout=300)


def assert_clean(result, *fragments):
  assert result.returncode == user_errors.EXIT_USER_ERROR, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert 'Traceback' not in result.stderr and len(lines) <= 4, result.stderr[-2000:]   # (+ a library warning)
  error = next(i for i, line in enumerate(lines) if line.startswith('error: '))
  assert lines[error + 1:] == [f'(--verbose_errors or {user_errors.VERBOSE_ENV}=1 shows the traceback)']
  for fragment in fragments:
    assert fragment in result.stderr, (fragment, result.stderr)


def test_a_typo_in_a_config_override_names_the_field(tmp_path):
  result = run('experiments.train', '--config=configs/test_tiny.py', f'--workdir={tmp_path}',
               '--config.model.scorrer=dot')
  assert_clean(result, "no config field 'scorrer'.", 'Did you mean "scorer"')


def test_an_unknown_scorer_lists_the_valid_ones(tmp_path):
  result = run('experiments.train', '--config=configs/test_tiny.py', f'--workdir={tmp_path}',
               '--config.model.scorer=bahdanau')
  assert_clean(result, "Unknown scorer 'bahdanau'", 'Valid scorers: additive')


def test_a_dataset_not_prepared_names_the_command(tmp_path):
  result = run('experiments.train', '--config=configs/messages_en_fr_cpu.py', f'--workdir={tmp_path / "w"}',
               f'--config.data.data_dir={tmp_path / "no_data"}')
  assert_clean(result, 'not prepared', 'python -m experiments.prepare_data --dataset=messages_en_fr')


def test_translate_without_a_run_or_without_input(tmp_path):
  assert_clean(run('experiments.translate', f'--workdir={tmp_path}', 'some text'), 'holds no training run',
               'python -m experiments.train')
  assert_clean(run('experiments.translate', f'--workdir={tmp_path}'), 'Give sentences')


def test_prepare_data_with_an_unknown_dataset_and_a_missing_flag():
  assert_clean(run('experiments.prepare_data', '--dataset=wmt99'), 'wmt99')
  assert_clean(run('experiments.compare', '--config=configs/compare_quick.py'), '--workdir')


def test_seeded_runs_with_a_bad_variant_value_fails_before_training(tmp_path):
  result = run('experiments.seeded_runs', '--config=configs/sentiment_pooling.py', f'--workdir={tmp_path}',
               '--config.model.pooling=multi')
  assert_clean(result, 'Valid poolings: context_query, structured')
  assert not os.path.exists(tmp_path / 'runs')


@pytest.mark.parametrize('how', ['flag', 'env'])
def test_the_traceback_on_request(tmp_path, how):
  args = ['--config=configs/test_tiny.py', f'--workdir={tmp_path}', '--config.model.scorer=bahdanau']
  if how == 'flag':
    result = run('experiments.train', *args, '--verbose_errors')
  else:
    result = run('experiments.train', *args, env_extra={user_errors.VERBOSE_ENV: '1'})
  assert result.returncode != 0 and 'Traceback' in result.stderr and "Unknown scorer 'bahdanau'" in result.stderr


def test_message_unwraps_ml_collections_key_errors():
  wrapped = AttributeError(KeyError('\'scorrer\'\nDid you mean "scorer" instead of "scorrer"?'))
  assert user_errors.message(wrapped) == "no config field 'scorrer'. Did you mean \"scorer\" instead of \"scorrer\"?"
  assert user_errors.message(ValueError('bad value')) == 'bad value'
