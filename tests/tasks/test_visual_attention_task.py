"""Fashion canvases (translated and cluttered) built from fake IDX files, and the visual-attention task end to end."""

import json
import os

import numpy as np
import pytest

from attention_jax import tasks
from attention_jax.data import canvases
from attention_jax.data import digit_strips as digit_data
from attention_jax.tasks import visual_attention
from configs import glimpses as glimpses_config
from configs import glimpses_sweep
from tests.helpers.fake_data import write_fake_fashion


@pytest.fixture(scope='module')
def fashion_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('fashion') / 'idx'
  write_fake_fashion(directory)
  return str(directory)


def test_translated_canvases_hold_each_pool_image_once_in_its_box(fashion_dir, tmp_path):
  images, labels, pools = digit_data.read_fashion_mnist(fashion_dir)
  builder = canvases.build(str(tmp_path / 'canvases'), fashion_dir, variant='fashion_canvases')
  sources = builder.as_data_source()
  assert {k: len(v) for k, v in sources.items()} == {k: len(v) for k, v in pools.items()}
  for split, source in sources.items():
    seen = sorted(int(source[i]['source_index']) for i in range(len(source)))
    assert seen == sorted(pools[split].tolist())                # official test images only in test, each once
    for i in range(len(source)):
      example = source[i]
      top, left = example['box']
      canvas = example['image'][..., 0]
      item = np.round(images[example['source_index']] * 255).astype(np.uint8)
      np.testing.assert_array_equal(canvas[top:top + 28, left:left + 28], item)
      outside = canvas.copy()
      outside[top:top + 28, left:left + 28] = 0
      assert not outside.any() and example['label'] == labels[example['source_index']]
  assert len({tuple(sources['train'][i]['box']) for i in range(len(sources['train']))}) > 5     # placed at random
  batch = next(iter(canvases.batches(sources['train'], batch_size=4, seed=0, shuffle=True)))
  assert batch['image'].shape == (4, 60, 60, 1) and batch['image'].dtype == np.float32 and batch['image'].max() <= 1
  with pytest.raises(ValueError, match='Valid datasets: fashion_canvases, fashion_cluttered'):
    canvases.load(str(tmp_path), variant='mnist')
  # The plain build is not the cluttered one, even in the same directory.
  with pytest.raises(FileNotFoundError, match='fashion_cluttered dataset is not prepared'):
    canvases.load(str(tmp_path / 'canvases'), variant='fashion_cluttered')
  with pytest.raises(FileNotFoundError, match='prepare_data --dataset=fashion_cluttered'):
    canvases.load(str(tmp_path / 'nothing'), variant='fashion_cluttered')


def test_clutter_comes_from_the_same_pool_and_never_hides_the_item():
  # Image k is uniformly (k + 1) / 255, so a canvas's pixel values say which images it was made of.
  images = np.repeat(((np.arange(60) + 1) / 255.0)[:, None, None], 28, axis=1).repeat(28, axis=2)
  labels = np.arange(60) % 10
  pool = np.arange(40, 60)
  for example in canvases.generate_canvases(images, labels, pool, clutter=4, seed=0):
    top, left = example['box']
    canvas = example['image'][..., 0].astype(np.int64)
    item = int(example['source_index']) + 1
    assert np.all(canvas[top:top + 28, left:left + 28] >= item)      # combined by maximum: the item stays whole
    outside = canvas.copy()
    outside[top:top + 28, left:left + 28] = 0
    assert outside.any()                                            # clutter outside the item's box
    assert set(np.unique(outside).tolist()) - {0} <= set((pool + 1).tolist())    # only pool images as clutter
    assert int(example['source_index']) in pool


def _build_fake_data(fashion_dir, data_dir):
  canvases.build(data_dir, fashion_dir, variant='fashion_canvases')


def test_ram_trains_end_to_end_and_draws_its_glimpse_paths(fashion_dir, tmp_path):
  data_dir = str(tmp_path / 'data')
  _build_fake_data(fashion_dir, data_dir)
  config = glimpses_config.get_config('smoke')
  config.data.data_dir = data_dir
  workdir = str(tmp_path / 'run')
  results = tasks.run(config, workdir)
  assert set(results['test']) == {'accuracy', 'error', 'glimpses_on_item', 'parameters'}
  assert results['test']['accuracy'] + results['test']['error'] == pytest.approx(1.0)
  assert os.path.getsize(os.path.join(workdir, 'attention.png')) > 1000
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['test'] == results['test']
  # Rerunning the finished run resumes from its checkpoint and evaluates the same parameters.
  assert tasks.run(config, workdir)['test'] == results['test']


@pytest.mark.slow
def test_glimpse_sweep_smoke_writes_a_report(fashion_dir, tmp_path):
  from attention_jax.studies.seeded_runs import run_seeded_variants
  data_dir = str(tmp_path / 'data')
  _build_fake_data(fashion_dir, data_dir)
  config = glimpses_sweep.get_config('smoke')
  config.data.data_dir = data_dir
  report = run_seeded_variants(config, str(tmp_path / 'sweep'), 'test')
  text = open(report).read()
  assert '| cnn |' in text and '| ram3 |' in text and 'glimpses_on_item' in text
  assert os.path.exists(tmp_path / 'sweep' / 'attention_ram3.png')


def test_config_errors_name_the_field_and_the_valid_values():
  config = glimpses_config.get_config()
  config.model.kind = 'mlp'
  with pytest.raises(ValueError, match="config.model.kind 'mlp'. Valid kinds: ram, cnn"):
    visual_attention.validate_config(config)
  config = glimpses_config.get_config('soft')
  config.model.glimpse = 'foveal'
  with pytest.raises(ValueError, match='Valid glimpses: hard, soft'):
    visual_attention.validate_config(config)
  config = glimpses_config.get_config()
  config.data.name = 'digit_strips'
  with pytest.raises(ValueError, match='Valid datasets: fashion_canvases, fashion_cluttered'):
    visual_attention.validate_config(config)
  with pytest.raises(ValueError, match='Valid options: soft, cnn, cluttered'):
    glimpses_config.get_config('foveal')
