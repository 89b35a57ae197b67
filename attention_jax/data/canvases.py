"""Fashion-MNIST items placed on a larger canvas, to be found and classified (Mnih et al. 2014's translated and
cluttered MNIST protocol, on clothes), as a tfds builder + grain pipeline.

  'fashion_canvases': each 28x28 item at a uniformly random position on a 60x60 black canvas.
  'fashion_cluttered': the same plus 4 8x8 crops of other images of the same split's pool, each at a random
    position (Mnih et al.'s clutter); crops and item are combined by their maximum, so the item is never hidden.

The items come from the pinned Debian package dataset-fashion-mnist (as `fashion_strips`): pools are the first 90%
of the official training set (train), its last 10% (validation) and the official test set (test), so test canvases
only hold official test images, clutter included. By default every image of a pool is placed once.

Each example: image uint8 [S, S, 1], label int32 (the class, 0-9), box int32 [2] (the item's top and left pixel).

    python -m experiments.prepare_data --dataset=fashion_canvases
    python -m experiments.prepare_data --dataset=fashion_cluttered
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grain
import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import digit_strips

CANVAS_SIZE = 60
ITEM_SIZE = 28
CLUTTER_SIZE = 8
CLASS_NAMES = digit_strips.CLASS_NAMES['fashion_mnist']
VARIANTS = {'fashion_canvases': 0, 'fashion_cluttered': 4}        # dataset name -> pieces of clutter per canvas
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset={name}'


def check_variant(name: str) -> None:
  if name not in VARIANTS:
    raise ValueError(f'Unknown canvas dataset {name!r}. Valid datasets: {", ".join(VARIANTS)}.')


def make_canvas(item: np.ndarray, top: int, left: int, clutter: list[tuple[np.ndarray, int, int]],
                size: int = CANVAS_SIZE) -> np.ndarray:
  """[size, size] float32: the clutter crops pasted first (max with what is there), then the item."""
  canvas = np.zeros((size, size), np.float32)
  for crop, y, x in clutter:
    h, w = crop.shape
    canvas[y:y + h, x:x + w] = np.maximum(canvas[y:y + h, x:x + w], crop)
  h, w = item.shape
  canvas[top:top + h, left:left + w] = np.maximum(canvas[top:top + h, left:left + w], item)
  return canvas


def generate_canvases(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, *, clutter: int, seed: int,
                      count: int | None = None, size: int = CANVAS_SIZE) -> Iterator[dict]:
  """Yields canvases of the pool's images (each once, in a seeded order, when count is None)."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(pool) if count is None else rng.choice(pool, size=count, replace=True)
  item_size = images.shape[1]
  for index in order:
    top, left = (int(v) for v in rng.integers(0, size - item_size + 1, size=2))
    pieces = []
    for _ in range(clutter):
      other = int(rng.choice(pool))
      cy, cx = (int(v) for v in rng.integers(0, item_size - CLUTTER_SIZE + 1, size=2))
      y, x = (int(v) for v in rng.integers(0, size - CLUTTER_SIZE + 1, size=2))
      pieces.append((images[other, cy:cy + CLUTTER_SIZE, cx:cx + CLUTTER_SIZE], y, x))
    canvas = make_canvas(images[index], top, left, pieces, size)
    yield {'image': np.round(canvas * 255).astype(np.uint8)[..., None], 'label': np.int32(labels[index]),
           'box': np.asarray([top, left], np.int32), 'source_index': np.int32(index)}


class FashionCanvases(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST items on 60x60 canvases without clutter (array_record); FashionCluttered with it. Each variant
  is its own tfds dataset (named after it), so one data_dir never passes one variant off as the other.

  `source_path`: the directory of the four Fashion-MNIST IDX files. `counts`: canvases per split (None: each image
  of the split's pool once).
  """

  VERSION = tfds.core.Version('1.0.0')
  VARIANT = 'fashion_canvases'

  def __init__(self, *, source_path: str = '', counts: dict[str, int] | None = None, seed: int = 0, **kwargs):
    self._variant, self._source_path, self._counts, self._seed = self.VARIANT, source_path, counts or {}, seed
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Fashion-MNIST items at random positions on {CANVAS_SIZE}x{CANVAS_SIZE} canvases, '
                    f'{VARIANTS[self._variant]} pieces of clutter each.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(CANVAS_SIZE, CANVAS_SIZE, 1), dtype=np.uint8),
            'label': tfds.features.Tensor(shape=(), dtype=np.int32),
            'box': tfds.features.Tensor(shape=(2,), dtype=np.int32),
            'source_index': tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    images, labels, pools = digit_strips.read_fashion_mnist(self._source_path)
    return {split: self._generate_examples(images, labels, pools[split], split) for split in pools}

  def _generate_examples(self, images, labels, pool, split) -> Iterator[tuple[int, dict]]:
    split_seed = self._seed * 1000 + ('train', 'validation', 'test').index(split)
    yield from enumerate(generate_canvases(images, labels, pool, clutter=VARIANTS[self._variant], seed=split_seed,
                                           count=self._counts.get(split)))


class FashionCluttered(FashionCanvases):
  """The canvases with 4 pieces of 8x8 clutter (see FashionCanvases)."""
  VARIANT = 'fashion_cluttered'


BUILDERS = {'fashion_canvases': FashionCanvases, 'fashion_cluttered': FashionCluttered}


def build(data_dir: str, source_path: str, *, variant: str = 'fashion_canvases', **options) -> FashionCanvases:
  check_variant(variant)
  builder = BUILDERS[variant](source_path=source_path, data_dir=data_dir, file_format='array_record', **options)
  builder.download_and_prepare()
  return builder


def prepare(data_dir: str, *, variant: str = 'fashion_canvases', **options) -> FashionCanvases:
  """apt-get download of the pinned Fashion-MNIST + build: what `experiments.prepare_data --dataset=<variant>` runs."""
  check_variant(variant)
  path = digit_strips.fetch_fashion_mnist(os.path.join(data_dir, 'downloads'))
  return build(data_dir, path, variant=variant, **options)


def load(data_dir: str, *, variant: str = 'fashion_canvases', **options) -> FashionCanvases:
  check_variant(variant)
  builder = BUILDERS[variant](data_dir=data_dir, file_format='array_record', **options)
  if not builder.is_prepared():
    raise FileNotFoundError(f'The {variant} dataset is not prepared in {data_dir}. Run: '
                            f'{PREPARE_COMMAND.format(name=variant)} --data_dir={data_dir}')
  return builder


def encode_example(example: dict) -> dict:
  """-> {'image' float32 [S, S, 1] in [0, 1], 'label' int32 [], 'box' int32 [2]}."""
  return {'image': np.asarray(example['image'], np.float32) / 255.0, 'label': np.int32(example['label']),
          'box': np.asarray(example['box'], np.int32)}


def batches(source, *, batch_size: int, seed: int, shuffle: bool, process_index: int = 0, process_count: int = 1,
            drop_remainder: bool = True):
  """grain pipeline -> batches {'image' [B, S, S, 1], 'label' [B], 'box' [B, 2]}.

  With shuffle the order is a deterministic function of the seed, a new permutation each epoch; the iterator's
  get_state()/set_state() resume it exactly. Process p of n reads records p, p + n, ...
  """
  dataset = grain.MapDataset.source(source)[process_index::process_count]
  if shuffle:
    dataset = dataset.seed(seed).shuffle().repeat()
  dataset = dataset.map(encode_example)
  return dataset.batch(batch_size, drop_remainder=drop_remainder).to_iter_dataset()
