"""Strips of 3-5 small images (handwritten digits, or clothes) to read left to right, as a tfds builder + grain
pipeline.

Sources (`source=`), each with 10 classes:
  'sklearn_digits': the 1,797 real 8x8 handwritten digits that scikit-learn ships as
    sklearn/datasets/data/digits.csv.gz (BSD licence; UCI optical recognition of handwritten digits), from an
    installed scikit-learn or its wheel downloaded with pip. The SOURCE IMAGES are split 70/15/15 into
    train/validation/test pools before any strip is made, so test strips only contain digits never seen in training.
  'fashion_mnist': the 70,000 28x28 Fashion-MNIST images (Xiao et al. 2017, MIT licence) from the pinned Debian
    package dataset-fashion-mnist (`apt-get download`, never installed). Pools: the first 90% of the official
    training set / its last 10% / the official test set, so test strips only contain unseen images.

Each example: image [s, s * max_digits, 1] float32 in [0, 1] (s = 8 or 28; items left-aligned, zero padding on
the right), the labels, the indices of the source images, and the gold column span of every item (item t occupies
columns s t .. s t + s - 1), which scores where spatial attention looks.

Target tokens: PAD 0, BOS 1, EOS 2, class d -> 3 + d (vocabulary 13).

    python -m experiments.prepare_data --dataset=digit_strips
    python -m experiments.prepare_data --dataset=fashion_strips
"""

from __future__ import annotations

import glob
import gzip
import importlib.util
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator

import grain
import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import debian
from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID

DIGIT_SIZE = 8
DIGIT_OFFSET = EOS_ID + 1      # class d -> id 3 + d: the classes follow PAD, BOS, EOS (no UNK: every class is known)
VOCAB_SIZE = DIGIT_OFFSET + 10
SKLEARN_VERSION = '1.9.1'
_CSV_IN_WHEEL = 'sklearn/datasets/data/digits.csv.gz'
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=digit_strips'
SPLIT_FRACTIONS = {'train': 0.70, 'validation': 0.15, 'test': 0.15}
ITEM_SIZES = {'sklearn_digits': DIGIT_SIZE, 'fashion_mnist': 28}     # source -> side of one item image
PREPARE_COMMANDS = {'sklearn_digits': PREPARE_COMMAND,
                    'fashion_mnist': 'python -m experiments.prepare_data --dataset=fashion_strips'}
CLASS_NAMES = {
    'sklearn_digits': tuple(str(d) for d in range(10)),
    'fashion_mnist': ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                      'Ankle boot'),
}
FASHION_PACKAGES = {'dataset-fashion-mnist': '0.0~git20200523.55506a9-1'}
FASHION_DIR = os.path.join('usr', 'share', 'datasets', 'fashion-mnist')
FASHION_VALIDATION_FRACTION = 0.1      # of the official training set


def check_source(source: str) -> None:
  if source not in ITEM_SIZES:
    raise ValueError(f'Unknown strip source {source!r}. Valid sources: {", ".join(ITEM_SIZES)}.')


def read_idx(path: str) -> np.ndarray:
  """An IDX file (MNIST format: big-endian magic 0x08 uint8, rank, dims; gzipped or not) -> uint8 array."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f'{path}: not an unsigned-byte IDX file (magic {data[:4].hex()}).')
  rank = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(rank))
  values = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
  if values.size != int(np.prod(shape)):
    raise ValueError(f'{path}: header says {shape} ({int(np.prod(shape))} values) but holds {values.size}.')
  return values.reshape(shape)


def read_fashion_mnist(directory: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """(images [N, 28, 28] in [0, 1], labels [N], pools) with the official test set last and as the test pool."""
  parts = {}
  for part in ('train', 't10k'):
    images = read_idx(os.path.join(directory, f'{part}-images-idx3-ubyte.gz'))
    labels = read_idx(os.path.join(directory, f'{part}-labels-idx1-ubyte.gz'))
    if len(images) != len(labels):
      raise ValueError(f'{directory}: {len(images)} {part} images but {len(labels)} labels.')
    parts[part] = (images, labels)
  n_train, n_test = len(parts['train'][0]), len(parts['t10k'][0])
  n_validation = int(round(FASHION_VALIDATION_FRACTION * n_train))
  images = np.concatenate([parts['train'][0], parts['t10k'][0]]).astype(np.float32) / 255.0
  labels = np.concatenate([parts['train'][1], parts['t10k'][1]]).astype(np.int64)
  pools = {'train': np.arange(n_train - n_validation), 'validation': np.arange(n_train - n_validation, n_train),
           'test': np.arange(n_train, n_train + n_test)}
  return images, labels, pools


def load_items(source: str, path: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """(item images [N, s, s] in [0, 1], labels [N], disjoint split pools of image indices) of a source."""
  check_source(source)
  if source == 'fashion_mnist':
    return read_fashion_mnist(path)
  images, labels = read_digits_csv(path)
  return images, labels, split_pools(len(images), seed)


def read_digits_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
  """digits.csv.gz (64 pixel values 0..16 then the label, per line) -> (images [N, 8, 8] in [0, 1], labels [N])."""
  with gzip.open(path, 'rt') as f:
    table = np.loadtxt(f, delimiter=',', ndmin=2)
  if table.shape[1] != DIGIT_SIZE * DIGIT_SIZE + 1:
    raise ValueError(f'{path}: expected 65 columns (64 pixels + label), got {table.shape[1]}.')
  images = (table[:, :-1] / 16.0).reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.float32)
  return images, table[:, -1].astype(np.int64)


def fetch_digits_csv(raw_dir: str) -> str:
  """Path of digits.csv.gz: from an installed scikit-learn, else extracted from its wheel (pip download)."""
  spec = importlib.util.find_spec('sklearn')
  if spec is not None and spec.origin:
    installed = os.path.join(os.path.dirname(spec.origin), 'datasets', 'data', 'digits.csv.gz')
    if os.path.exists(installed):
      return installed
  target = os.path.join(raw_dir, 'digits.csv.gz')
  if os.path.exists(target):
    return target
  os.makedirs(raw_dir, exist_ok=True)
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary', ':all:',
             f'scikit-learn=={SKLEARN_VERSION}', '-d', raw_dir]
  result = subprocess.run(command, capture_output=True, text=True)
  wheels = glob.glob(os.path.join(raw_dir, 'scikit_learn-*.whl'))
  if result.returncode or not wheels:
    raise RuntimeError(f'Could not download scikit-learn with pip ({" ".join(command)}):\n{result.stderr[-2000:]}\n'
                       'Install scikit-learn (`pip install scikit-learn`) and rerun: ' + PREPARE_COMMAND)
  with zipfile.ZipFile(wheels[0]) as wheel, open(target, 'wb') as out:
    out.write(wheel.read(_CSV_IN_WHEEL))
  return target


def split_pools(num_images: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Disjoint source-image index pools per split (a seeded permutation cut 70/15/15)."""
  order = np.random.default_rng(seed).permutation(num_images)
  n_train = int(round(SPLIT_FRACTIONS['train'] * num_images))
  n_val = int(round(SPLIT_FRACTIONS['validation'] * num_images))
  return {'train': np.sort(order[:n_train]), 'validation': np.sort(order[n_train:n_train + n_val]),
          'test': np.sort(order[n_train + n_val:])}


def make_strip(images: np.ndarray, indices: np.ndarray, max_digits: int) -> np.ndarray:
  """Glues images[indices] ([N, s, s]) left to right into [s, s * max_digits, 1], zero-padded on the right."""
  size = images.shape[1]
  strip = np.zeros((size, size * max_digits, 1), np.float32)
  for position, index in enumerate(indices):
    strip[:, position * size:(position + 1) * size, 0] = images[index]
  return strip


def generate_strips(images, labels, pool, *, count: int, min_digits: int, max_digits: int, seed: int):
  """Yields `count` examples drawn (seeded) from the pool of source images."""
  rng = np.random.default_rng(seed)
  for _ in range(count):
    length = int(rng.integers(min_digits, max_digits + 1))
    indices = rng.choice(pool, size=length, replace=True)
    yield {'image': make_strip(images, indices, max_digits), 'digits': labels[indices].astype(np.int32),
           'source_indices': indices.astype(np.int32)}


class DigitStrips(tfds.core.GeneratorBasedBuilder):
  """Strips of min_digits..max_digits items of one source with source-image-disjoint splits (array_record).

  `source_path`: digits.csv.gz for 'sklearn_digits', the directory of the four IDX files for 'fashion_mnist'.
  """

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, source: str = 'sklearn_digits', source_path: str = '', min_digits: int = 3,
               max_digits: int = 5, counts: dict[str, int] | None = None, seed: int = 0, **kwargs):
    check_source(source)
    self._source, self._source_path = source, source_path
    self._min_digits, self._max_digits, self._seed = min_digits, max_digits, seed
    self._counts = counts or {'train': 20000, 'validation': 1000, 'test': 1000}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = ITEM_SIZES[self._source]
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Strips of {size}x{size} {self._source} images, split by source image.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(size, size * self._max_digits, 1), dtype=np.float32),
            'digits': tfds.features.Tensor(shape=(None,), dtype=np.int32),
            'source_indices': tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    images, labels, pools = load_items(self._source, self._source_path, self._seed)
    return {split: self._generate_examples(images, labels, pools[split], split) for split in pools}

  def _generate_examples(self, images, labels, pool, split) -> Iterator[tuple[int, dict]]:
    split_seed = self._seed * 1000 + ('train', 'validation', 'test').index(split)
    examples = generate_strips(images, labels, pool, count=self._counts[split], min_digits=self._min_digits,
                               max_digits=self._max_digits, seed=split_seed)
    yield from enumerate(examples)


def build(data_dir: str, source_path: str, *, source: str = 'sklearn_digits', **options) -> DigitStrips:
  builder = DigitStrips(source=source, source_path=source_path, data_dir=data_dir, file_format='array_record',
                        **options)
  builder.download_and_prepare()
  return builder


def fetch_fashion_mnist(directory: str) -> str:
  """apt-get download + unpack of the pinned dataset-fashion-mnist; returns the directory of its IDX files."""
  root, = debian.download_packages(directory, FASHION_PACKAGES, purpose='Fashion-MNIST')
  return os.path.join(root, FASHION_DIR)


def prepare(data_dir: str, *, source: str = 'sklearn_digits', **options) -> DigitStrips:
  """Fetch the source images + build: what `experiments.prepare_data --dataset=digit_strips|fashion_strips` runs."""
  check_source(source)
  downloads = os.path.join(data_dir, 'downloads', source)
  path = fetch_fashion_mnist(downloads) if source == 'fashion_mnist' else fetch_digits_csv(downloads)
  return build(data_dir, path, source=source, **options)


def load(data_dir: str, *, source: str = 'sklearn_digits', **options) -> DigitStrips:
  builder = DigitStrips(source=source, data_dir=data_dir, file_format='array_record', **options)
  if not builder.is_prepared():
    raise FileNotFoundError(f'The {source} strips are not prepared in {data_dir}. Run: '
                            f'{PREPARE_COMMANDS[source]} --data_dir={data_dir}')
  return builder


def encode_example(example: dict, *, max_digits: int) -> dict:
  """-> {'image' [s, W, 1], 'target_in' [T], 'target_out' [T], 'spans' [T, 2]} with T = max_digits + 1."""
  digits = np.asarray(example['digits'], np.int32)
  size = np.shape(example['image'])[0]
  length = max_digits + 1
  target_out = np.full(length, PAD_ID, np.int32)
  target_out[: len(digits)] = digits + DIGIT_OFFSET
  target_out[len(digits)] = EOS_ID
  target_in = np.full(length, PAD_ID, np.int32)
  target_in[0] = BOS_ID
  target_in[1: len(digits) + 1] = digits + DIGIT_OFFSET
  spans = np.full((length, 2), -1, np.int32)
  spans[: len(digits), 0] = np.arange(len(digits)) * size
  spans[: len(digits), 1] = spans[: len(digits), 0] + size
  return {'image': np.asarray(example['image'], np.float32), 'target_in': target_in, 'target_out': target_out,
          'spans': spans}


def batches(source, *, batch_size: int, max_digits: int, seed: int, shuffle: bool, process_index: int = 0,
            process_count: int = 1, drop_remainder: bool = True):
  """grain pipeline -> batches {'image' [B, s, W, 1], 'target_in' [B, T], 'target_out' [B, T], 'spans' [B, T, 2]}.

  With shuffle the order is a deterministic function of the seed, repeating with a new permutation per
  epoch; the iterator's get_state()/set_state() resume it exactly. Process p of n reads records p, p + n, ...
  """
  dataset = grain.MapDataset.source(source)[process_index::process_count]
  if shuffle:
    dataset = dataset.seed(seed).shuffle().repeat()
  dataset = dataset.map(lambda ex: encode_example(ex, max_digits=max_digits))
  return dataset.batch(batch_size, drop_remainder=drop_remainder).to_iter_dataset()


def decode_digits(tokens) -> str:
  """Output ids -> the digit string read (stops at EOS; ignores non-digit ids)."""
  out = []
  for token in np.asarray(tokens).tolist():
    if token == EOS_ID:
      break
    if DIGIT_OFFSET <= token < VOCAB_SIZE:
      out.append(str(token - DIGIT_OFFSET))
  return ''.join(out)
