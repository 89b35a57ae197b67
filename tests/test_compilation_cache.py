"""attention_jax.compilation_cache: where the entry points' persistent compilation cache goes, when it stays off,
and that a second process loads what the first compiled."""

import json
import os
import re
import subprocess
import sys

import jax
import pytest

from attention_jax import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_cache_dir(monkeypatch):
  """JAX's cache directory unset (the suite sets one for itself) and restored afterwards; no env setting."""
  saved = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', None)
  monkeypatch.delenv(compilation_cache.ENV_VARIABLE, raising=False)
  yield
  jax.config.update('jax_compilation_cache_dir', saved)


def test_default_directory_is_per_machine_under_the_xdg_cache(no_cache_dir, monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  expected = os.path.join(str(tmp_path), 'attention_jax', 'xla', compilation_cache.machine_key())
  assert compilation_cache.enable() == f'cache in {expected}'
  assert jax.config.jax_compilation_cache_dir == expected and os.path.isdir(expected)


def test_the_environment_names_the_root_or_turns_it_off(no_cache_dir, monkeypatch, tmp_path):
  monkeypatch.setenv(compilation_cache.ENV_VARIABLE, str(tmp_path / 'mine'))
  assert compilation_cache.enable().startswith(f'cache in {tmp_path / "mine"}{os.sep}')
  jax.config.update('jax_compilation_cache_dir', None)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  monkeypatch.setenv(compilation_cache.ENV_VARIABLE, '~/xla')                    # expanded, not ./~/xla
  assert compilation_cache.enable().startswith(f'cache in {tmp_path / "home" / "xla"}{os.sep}')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  for value in ('on', '1', 'TRUE', 'yes'):                                        # the default location
    jax.config.update('jax_compilation_cache_dir', None)
    monkeypatch.setenv(compilation_cache.ENV_VARIABLE, value)
    assert compilation_cache.enable().startswith(f'cache in {tmp_path / "xdg" / "attention_jax" / "xla"}{os.sep}')
  jax.config.update('jax_compilation_cache_dir', None)
  for value in ('off', 'OFF', '0', 'false', 'no'):
    monkeypatch.setenv(compilation_cache.ENV_VARIABLE, value)
    assert compilation_cache.enable() == f'off ({compilation_cache.ENV_VARIABLE}={value})'
    assert jax.config.jax_compilation_cache_dir is None


def test_a_directory_given_to_jax_is_kept_and_a_disabled_cache_stays_off(no_cache_dir, tmp_path):
  jax.config.update('jax_compilation_cache_dir', str(tmp_path))
  assert compilation_cache.enable(str(tmp_path / 'other')) == f'kept the cache directory JAX was given: {tmp_path}'
  assert jax.config.jax_compilation_cache_dir == str(tmp_path)
  jax.config.update('jax_compilation_cache_dir', None)
  jax.config.update('jax_enable_compilation_cache', False)
  try:
    assert compilation_cache.enable(str(tmp_path / 'other')) == 'off (jax_enable_compilation_cache is False)'
    assert jax.config.jax_compilation_cache_dir is None
  finally:
    jax.config.update('jax_enable_compilation_cache', True)


def test_an_unusable_directory(no_cache_dir, monkeypatch, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  with pytest.raises(ValueError, match='cannot create the compilation cache directory.*writable directory.*"off"'):
    compilation_cache.enable(str(blocker / 'cache'))
  monkeypatch.setenv('XDG_CACHE_HOME', str(blocker))      # the default location: the run goes on without a cache
  assert compilation_cache.enable().startswith(f'off: cannot create {blocker}')
  assert jax.config.jax_compilation_cache_dir is None


def test_machine_key_follows_the_cpu_model_and_flags_not_their_order(tmp_path):
  def key(model, flags):
    path = tmp_path / 'cpuinfo'
    path.write_text(f'processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\nprocessor\t: 1\n'
                    f'model name\t: other\nflags\t\t: other\n')
    return compilation_cache.machine_key(str(path))

  base = key('AMD EPYC', 'fma avx avx2')
  assert base == key('AMD EPYC', 'avx2 fma avx')
  assert base != key('AMD EPYC', 'fma avx avx2 avx512f')
  assert base != key('Intel Xeon', 'fma avx avx2')
  key_format = re.compile(r'^[A-Za-z0-9_]+-[0-9a-f]{12}$')
  assert key_format.match(base)
  assert key_format.match(compilation_cache.machine_key(str(tmp_path / 'missing')))   # platform.processor()


_PROGRAM = '''
import json, sys
import experiments                      # the entry points' set-up: turns the cache on
import jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(event) if event == '/jax/compilation_cache/cache_hits' else None)
value = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) * 3.0))(jnp.arange(16.0))
print(json.dumps({'setting': experiments.COMPILATION_CACHE, 'hits': len(hits), 'value': value.tolist()}))
'''


def _entry_point_process(env: dict) -> dict:
  output = subprocess.run([sys.executable, '-c', _PROGRAM], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=True)
  return json.loads(output.stdout.strip().splitlines()[-1])


def test_a_second_entry_point_process_loads_what_the_first_compiled(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update({compilation_cache.ENV_VARIABLE: str(tmp_path), 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
              'PYTHONPATH': ROOT + os.pathsep + env.get('PYTHONPATH', '')})
  first, second = _entry_point_process(env), _entry_point_process(env)
  assert first['setting'] == f'cache in {tmp_path / compilation_cache.machine_key()}'
  assert first['hits'] == 0 and second['hits'] >= 1
  assert second['value'] == first['value']
  assert os.listdir(tmp_path / compilation_cache.machine_key())


def test_an_entry_point_keeps_the_directory_given_to_jax_by_the_environment(tmp_path):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'given'),
             PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env[compilation_cache.ENV_VARIABLE] = str(tmp_path / 'ours')
  run = _entry_point_process(env)
  assert run['setting'] == f'kept the cache directory JAX was given: {tmp_path / "given"}'
  assert not (tmp_path / 'ours').exists()
