"""Strips of 3-5 handwritten digits to read left to right, as a tfds builder + grain pipeline.

Source: the 1,797 real 8x8 handwritten digits that scikit-learn ships as sklearn/datasets/data/digits.csv.gz
(BSD licence; UCI optical recognition of handwritten digits). Taken from an installed scikit-learn, or from
its wheel downloaded with pip. The SOURCE IMAGES are split 70/15/15 into train/validation/test pools before
any strip is made, so test strips only contain digits never seen in training.

Each example: image [8, 8 * max_digits, 1] float32 in [0, 1] (digits left-aligned, zero padding on the right),
the digit labels, the indices of the source images, and the gold column span of every digit (digit t
occupies columns 8t .. 8t + 7), which scores where spatial attention looks.

Target tokens: PAD 0, BOS 1, EOS 2, digit d -> 3 + d (vocabulary 13).

    python -m experiments.prepare_data --dataset=digit_strips
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

DIGIT_SIZE = 8
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
DIGIT_OFFSET = 3
VOCAB_SIZE = DIGIT_OFFSET + 10
SKLEARN_VERSION = '1.9.1'
_CSV_IN_WHEEL = 'sklearn/datasets/data/digits.csv.gz'
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=digit_strips'
SPLIT_FRACTIONS = {'train': 0.70, 'validation': 0.15, 'test': 0.15}


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
  """Glues images[indices] left to right into [8, 8 * max_digits, 1], zero-padded on the right."""
  strip = np.zeros((DIGIT_SIZE, DIGIT_SIZE * max_digits, 1), np.float32)
  for position, index in enumerate(indices):
    strip[:, position * DIGIT_SIZE:(position + 1) * DIGIT_SIZE, 0] = images[index]
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
  """Strips of min_digits..max_digits scikit-learn digits with source-image-disjoint splits (array_record)."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, csv_path: str = '', min_digits: int = 3, max_digits: int = 5,
               counts: dict[str, int] | None = None, seed: int = 0, **kwargs):
    self._csv_path = csv_path
    self._min_digits, self._max_digits, self._seed = min_digits, max_digits, seed
    self._counts = counts or {'train': 20000, 'validation': 1000, 'test': 1000}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    width = DIGIT_SIZE * self._max_digits
    return tfds.core.DatasetInfo(
        builder=self,
        description='Strips of handwritten 8x8 digits (scikit-learn digits), split by source image.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(DIGIT_SIZE, width, 1), dtype=np.float32),
            'digits': tfds.features.Tensor(shape=(None,), dtype=np.int32),
            'source_indices': tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    images, labels = read_digits_csv(self._csv_path)
    pools = split_pools(len(images), self._seed)
    return {split: self._generate_examples(images, labels, pools[split], split) for split in pools}

  def _generate_examples(self, images, labels, pool, split) -> Iterator[tuple[int, dict]]:
    split_seed = self._seed * 1000 + ('train', 'validation', 'test').index(split)
    examples = generate_strips(images, labels, pool, count=self._counts[split], min_digits=self._min_digits,
                               max_digits=self._max_digits, seed=split_seed)
    yield from enumerate(examples)


def build(data_dir: str, csv_path: str, **options) -> DigitStrips:
  builder = DigitStrips(csv_path=csv_path, data_dir=data_dir, file_format='array_record', **options)
  builder.download_and_prepare()
  return builder


def prepare(data_dir: str, **options) -> DigitStrips:
  """Fetch digits.csv.gz + build: what `experiments.prepare_data --dataset=digit_strips` runs."""
  return build(data_dir, fetch_digits_csv(os.path.join(data_dir, 'downloads', 'sklearn_digits')), **options)


def load(data_dir: str, **options) -> DigitStrips:
  builder = DigitStrips(data_dir=data_dir, file_format='array_record', **options)
  if not builder.is_prepared():
    raise FileNotFoundError(f'The digit_strips dataset is not prepared in {data_dir}. Run: '
                            f'{PREPARE_COMMAND} --data_dir={data_dir}')
  return builder


def encode_example(example: dict, *, max_digits: int) -> dict:
  """-> {'image' [8, W, 1], 'target_in' [T], 'target_out' [T], 'spans' [T, 2]} with T = max_digits + 1."""
  digits = np.asarray(example['digits'], np.int32)
  length = max_digits + 1
  target_out = np.zeros(length, np.int32)
  target_out[: len(digits)] = digits + DIGIT_OFFSET
  target_out[len(digits)] = EOS_ID
  target_in = np.zeros(length, np.int32)
  target_in[0] = BOS_ID
  target_in[1: len(digits) + 1] = digits + DIGIT_OFFSET
  spans = np.full((length, 2), -1, np.int32)
  spans[: len(digits), 0] = np.arange(len(digits)) * DIGIT_SIZE
  spans[: len(digits), 1] = spans[: len(digits), 0] + DIGIT_SIZE
  return {'image': np.asarray(example['image'], np.float32), 'target_in': target_in, 'target_out': target_out,
          'spans': spans}


def batches(source, *, batch_size: int, max_digits: int, seed: int, shuffle: bool, process_index: int = 0,
            process_count: int = 1, drop_remainder: bool = True):
  """grain pipeline -> batches {'image' [B, 8, W, 1], 'target_in' [B, T], 'target_out' [B, T], 'spans' [B, T, 2]}.

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
