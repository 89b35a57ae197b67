"""Every shipped config loads through the real --config flag, documents its command, and passes validation;
command-line overrides work, typos and bad values fail with messages that name the problem."""

import glob
import os
import re

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from attention_jax.training import parallel
from attention_jax import tasks
from attention_jax.studies import seeded_runs
from attention_jax.studies.compare import variant_config
from attention_jax.tasks import translation
from attention_jax.tasks.translation import validate_config

# ml_collections loads config files with importlib's load_module (its own deprecation, not ours).
pytestmark = pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not p.endswith('__init__.py'))


def parse(*args):
  """The config as experiments/train.py would see it after parsing `args` (fresh flags each time)."""
  flag_values = flags.FlagValues()
  argv = ['train', *args]
  # sys_argv: the flag reads which config file to load (and so which override flags exist) from it.
  config_flags.DEFINE_config_file('config', None, 'config file', flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def test_the_readme_configs_are_shipped():
  assert {'configs/default.py', 'configs/luong.py', 'configs/test_tiny.py'} <= set(CONFIGS)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads_documents_its_command_and_validates(path, monkeypatch):
  monkeypatch.chdir(ROOT)
  config = parse(f'--config={path}')
  with open(path) as f:
    docstring = f.read().split('"""')[1]
  assert re.search(r'python -m experiments\.\w+ --config=' + re.escape(path), docstring), path
  # The expected result, or an honest note that the config has not been run to the end yet.
  assert re.search(r'\b(Expect|Measured|About|not yet measured)\b', docstring), f'{path}: say what to expect'
  experiment = config.get('experiment', 'translation')
  if 'compare' in config:
    for variant in config.compare.variants:
      validate_config(variant_config(config, variant))
  elif 'sweep' in config:
    seeded_runs.check_sweep(config)       # validates every variant with its task
  else:
    tasks.get(experiment).validate_config(config)


def test_default_and_luong_are_the_documented_models(monkeypatch):
  monkeypatch.chdir(ROOT)
  default = parse('--config=configs/default.py')
  assert (default.data.name, default.model.encoder, default.model.decoder, default.model.scorer) == (
      'date', 'bigru', 'bahdanau', 'additive')
  luong = parse('--config=configs/luong.py')
  assert (luong.model.decoder, luong.model.scorer, luong.model.input_feeding) == ('luong', 'general', True)


def test_command_line_overrides_and_config_argument(monkeypatch):
  monkeypatch.chdir(ROOT)
  config = parse('--config=configs/default.py', '--config.model.scorer=general', '--config.train.num_steps=7',
                 '--config.train.parallel=pmap')
  assert (config.model.scorer, config.train.num_steps, config.train.parallel) == ('general', 7, 'pmap')
  assert parse('--config=configs/reverse.py:additive').model.scorer == 'additive'    # get_config(arg)


@pytest.mark.parametrize('override, message', [
    ('--config.model.scorr=dot', 'scorr'),                      # a typo'd field name
    ('--config.train.num_steps=many', 'num_steps'),             # a value of the wrong type
])
def test_typos_fail_flag_parsing(override, message, monkeypatch):
  monkeypatch.chdir(ROOT)
  # absl reports a bad type as IllegalFlagValueError; ml_collections an unknown field as AttributeError.
  with pytest.raises((flags.Error, AttributeError), match=message):
    parse('--config=configs/default.py', override)


def test_config_is_locked_against_new_fields():
  config = parse(f'--config={os.path.join(ROOT, "configs/test_tiny.py")}')
  with pytest.raises(AttributeError):
    config.train.learnig_rate = 1.0


@pytest.mark.parametrize('group, field, value, message', [
    ('train', 'parallel', 'dp', "Unknown parallel mode 'dp'. Valid modes: sharded, pmap, single"),
    ('model', 'scorer', 'luong', "Unknown scorer 'luong'"),
    ('model', 'encoder', 'cnn', "Unknown encoder 'cnn'. Valid encoders:"),
    ('data', 'name', 'wmt', "Unknown dataset 'wmt'. Valid datasets: copy"),
    ('train', 'schedule', 'cosine', "Unknown config.train.schedule 'cosine'. Valid schedules: constant, rsqrt"),
    ('train', 'num_steps', 0, r'config.train.num_steps=0 must be an integer >= 1'),
    ('train', 'label_smoothing', 1.0, r'label_smoothing=1.0 must be in \[0, 1\)'),
    ('eval', 'beam_size', -1, r'config.eval.beam_size=-1 must be an integer >= 0'),
])
def test_validation_names_the_bad_value_and_the_valid_ones(group, field, value, message):
  config = translation.default_config('copy')
  config[group][field] = value
  with pytest.raises(ValueError, match=message):
    validate_config(config)


def test_batch_not_divisible_by_devices_names_both_numbers(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  config = translation.default_config('copy')
  config.train.batch_size = 12
  with pytest.raises(ValueError, match=r"train.batch_size=12 is not divisible by the 8 devices used by "
                                       r"parallel='sharded'; use a multiple of 8"):
    validate_config(config)
  config.train.batch_size, config.eval.batch_size = 16, 100
  with pytest.raises(ValueError, match=r'eval.batch_size=100 is not divisible by the 8 devices'):
    validate_config(config)
  config.train.parallel = 'single'             # one device per process: any batch size fits
  validate_config(config)
  assert parallel.PARALLEL_MODES == ('sharded', 'pmap', 'single')


def test_translation_model_config_has_exactly_the_model_fields():
  from attention_jax.models import MODEL_FIELDS
  assert set(translation.default_config().model) == set(MODEL_FIELDS)


def test_every_task_config_names_its_task_and_validates():
  for name, spec in tasks.TASKS.items():
    config = spec.default_config()
    assert config.experiment == name
    spec.validate_config(config)
  with pytest.raises(ValueError, match="Unknown config.experiment 'nmt'. Valid experiments: translation, sentiment"):
    tasks.get('nmt')
