"""Synthetic translation tasks with KNOWN source-target alignments, generated in code (no download), and their
tfds builder (array_record files, built on first use).

Tasks (character level):
  copy     'hjbdd'            -> 'hjbdd'        target i <-> source i
  reverse  'hjbdd'            -> 'ddbjh'        target i <-> source L-1-i
  sort     'hjbdd'            -> 'bddhj'        target i <-> the source position of that letter (stable)
  date     'tue 3 jan. 1995'  -> '1995-01-03'   year/month/day characters <-> the source characters they
                                                come from (a month name aligns to all its letters;
                                                '19' of a two-digit year and the dashes align to nothing)

Every example is {'source': str, 'target': str, 'alignment': int32 [K, 2] of (target index, source index)}.
Splits: 'train', 'validation', 'test' with lengths in [min_length, max_length], and for copy/reverse/sort
'test_long' with lengths in (max_length, 2 * max_length] for the length-generalisation test.

    builder = prepare('date', data_dir, num_train=200)     # data_dir/synthetic/date-<hash of the options>/
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

LETTERS = 'abcdefghijklmnopqrstuvwxyz'
MONTHS = ('january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october',
          'november', 'december')
WEEKDAYS = ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')
TASKS = ('copy', 'reverse', 'sort', 'date')
LONG_SPLIT_TASKS = ('copy', 'reverse', 'sort')
# The generation options of a built dataset, with the defaults the data config starts from (see prepare).
DEFAULT_OPTIONS = {'num_train': 20000, 'num_eval': 1000, 'seed': 0, 'min_length': 3, 'max_length': 10,
                   'alphabet_size': 10}

Example = dict


def _example(source: str, target: str, links: list[tuple[int, int]]) -> Example:
  return {'source': source, 'target': target, 'alignment': np.asarray(links, np.int32).reshape(-1, 2)}


def _random_letters(rng: random.Random, length: int, alphabet: str) -> str:
  return ''.join(rng.choice(alphabet) for _ in range(length))


def copy_example(rng: random.Random, length: int, alphabet: str) -> Example:
  source = _random_letters(rng, length, alphabet)
  return _example(source, source, [(i, i) for i in range(length)])


def reverse_example(rng: random.Random, length: int, alphabet: str) -> Example:
  source = _random_letters(rng, length, alphabet)
  return _example(source, source[::-1], [(i, length - 1 - i) for i in range(length)])


def sort_example(rng: random.Random, length: int, alphabet: str) -> Example:
  source = _random_letters(rng, length, alphabet)
  order = sorted(range(length), key=lambda i: (source[i], i))
  return _example(source, ''.join(source[i] for i in order), list(enumerate(order)))


class _Builder:
  """Concatenates pieces of a date string, remembering which characters carry the year, month and day."""

  def __init__(self):
    self.text = ''
    self.spans: dict[str, list[int]] = {}

  def add(self, piece: str, field: str | None = None) -> _Builder:
    if field:
      self.spans.setdefault(field, []).extend(range(len(self.text), len(self.text) + len(piece)))
    self.text += piece
    return self


def _date_source(rng: random.Random, date: datetime.date) -> _Builder:
  """One of many human-written formats, lower-cased."""
  day, month, year = date.day, date.month, date.year
  month_name = MONTHS[month - 1]
  short = month_name[:3]
  weekday = WEEKDAYS[date.weekday()]
  b = _Builder()
  fmt = rng.randrange(12)
  if fmt == 0:
    b.add(str(day), 'day').add(' ').add(month_name, 'month').add(' ').add(str(year), 'year')
  elif fmt == 1:
    b.add(month_name, 'month').add(' ').add(str(day), 'day').add(', ').add(str(year), 'year')
  elif fmt == 2:
    b.add(f'{day:02d}', 'day').add('/').add(f'{month:02d}', 'month').add('/').add(str(year), 'year')
  elif fmt == 3:
    b.add(str(year), 'year').add('.').add(f'{month:02d}', 'month').add('.').add(f'{day:02d}', 'day')
  elif fmt == 4:
    b.add(short, 'month').add(' ').add(str(day), 'day').add(' ').add(f'{year % 100:02d}', 'year2')
  elif fmt == 5:
    b.add(weekday[:3]).add(' ').add(str(day), 'day').add(' ').add(short, 'month').add('. ').add(str(year), 'year')
  elif fmt == 6:
    b.add(weekday).add(', ').add(month_name, 'month').add(' ').add(str(day), 'day').add(' ').add(str(year), 'year')
  elif fmt == 7:
    b.add(str(day), 'day').add('.').add(str(month), 'month').add('.').add(f'{year % 100:02d}', 'year2')
  elif fmt == 8:
    b.add('the ').add(str(day), 'day').add(_ordinal_suffix(day)).add(' of ').add(month_name, 'month').add(' ')
    b.add(str(year), 'year')
  elif fmt == 9:
    b.add(f'{month}', 'month').add('-').add(f'{day}', 'day').add('-').add(str(year), 'year')
  elif fmt == 10:
    b.add(str(day), 'day').add(' ').add(short, 'month').add(' ').add(str(year), 'year')
  else:
    b.add(str(year), 'year').add('-').add(f'{month:02d}', 'month').add('-').add(f'{day:02d}', 'day')
  return b


def _ordinal_suffix(day: int) -> str:
  if 10 <= day % 100 <= 20:
    return 'th'
  return {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')


def _field_links(target_positions: range, source_positions: list[int], numeric: bool) -> list[tuple[int, int]]:
  """Links for one field: digit-for-digit when the source writes the same number of digits right-aligned,
  otherwise every target character to every source character of the field (e.g. a month name)."""
  targets = list(target_positions)
  if numeric and len(source_positions) == len(targets):
    return list(zip(targets, source_positions))
  if numeric and len(source_positions) < len(targets):      # '3' -> '03': the leading zero is unaligned
    return list(zip(targets[-len(source_positions):], source_positions))
  return [(t, s) for t in targets for s in source_positions]


def date_example(rng: random.Random, first_year: int = 1950, last_year: int = 2049) -> Example:
  start = datetime.date(first_year, 1, 1).toordinal()
  date = datetime.date.fromordinal(rng.randrange(start, datetime.date(last_year, 12, 31).toordinal() + 1))
  built = _date_source(rng, date)
  target = date.isoformat()
  links = []
  if 'year' in built.spans:
    links += _field_links(range(0, 4), built.spans['year'], numeric=True)
  else:                                                     # two-digit year: '19'/'20' is inferred
    links += _field_links(range(2, 4), built.spans['year2'], numeric=True)
  month_numeric = built.text[built.spans['month'][0]].isdigit()
  links += _field_links(range(5, 7), built.spans['month'], numeric=month_numeric)
  links += _field_links(range(8, 10), built.spans['day'], numeric=True)
  return _example(built.text, target, sorted(links))


def _string_task(make: Callable[[random.Random, int, str], Example]):
  def generate(rng: random.Random, min_length: int, max_length: int, alphabet: str) -> Example:
    return make(rng, rng.randint(min_length, max_length), alphabet)
  return generate


_STRING_TASKS = {'copy': _string_task(copy_example), 'reverse': _string_task(reverse_example),
                 'sort': _string_task(sort_example)}

_SPLIT_SEEDS = {'train': 0, 'validation': 1, 'test': 2, 'test_long': 3}


def splits(task: str) -> tuple[str, ...]:
  return tuple(_SPLIT_SEEDS) if task in LONG_SPLIT_TASKS else ('train', 'validation', 'test')


def generate(task: str, split: str, count: int, *, seed: int = 0, min_length: int = 3, max_length: int = 12,
             alphabet_size: int = 10) -> Iterator[Example]:
  """Yields `count` examples of a task's split, a deterministic function of (task, split, seed, sizes).

  Each split is drawn from its own random stream; short strings may repeat across splits by chance.
  """
  if task not in TASKS:
    raise ValueError(f'Unknown synthetic task {task!r}. Valid tasks: {", ".join(TASKS)}.')
  if split not in splits(task):
    raise ValueError(f'Task {task!r} has no split {split!r}. Valid splits: {", ".join(splits(task))}.')
  rng = random.Random(f'{task}/{split}/{seed}')
  if task == 'date':
    for _ in range(count):
      yield date_example(rng)
    return
  alphabet = LETTERS[:alphabet_size]
  low, high = (max_length + 1, 2 * max_length) if split == 'test_long' else (min_length, max_length)
  make = _STRING_TASKS[task]
  for _ in range(count):
    yield make(rng, low, high, alphabet)


def alphabet(task: str, alphabet_size: int = 10) -> str:
  """Every character the task can produce (sources and targets), sorted: the character vocabulary."""
  if task == 'date':
    chars = set('0123456789 ,./-') | set(''.join(MONTHS + WEEKDAYS)) | set('thesofndr')
    return ''.join(sorted(chars))
  return LETTERS[:alphabet_size]


class SyntheticTranslation(tfds.core.GeneratorBasedBuilder):
  """A synthetic task with gold alignments, as array_record files."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, task: str, num_train: int, num_eval: int, seed: int, min_length: int, max_length: int,
               alphabet_size: int, **kwargs):
    self._options = dict(task=task, num_train=num_train, num_eval=num_eval, seed=seed, min_length=min_length,
                         max_length=max_length, alphabet_size=alphabet_size)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Synthetic {self._options["task"]} task with gold alignments; options {self._options}.',
        features=tfds.features.FeaturesDict({
            'source': tfds.features.Text(),
            'target': tfds.features.Text(),
            'alignment': tfds.features.Tensor(shape=(None, 2), dtype=np.int32),   # (target char, source char)
        }),
    )

  def _log_download_bytes(self) -> None:
    # tfds would print 'Downloading and preparing dataset Unknown size ...': nothing is downloaded here.
    o = self._options
    print(f'Generating the synthetic {o["task"]} task ({o["num_train"]} training examples) in {self.data_dir}',
          flush=True)

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager):
    del dl_manager
    o = self._options
    return {split: self._generate_examples(split, o['num_train'] if split == 'train' else o['num_eval'])
            for split in splits(o['task'])}

  def _generate_examples(self, split: str, count: int):
    o = self._options
    examples = generate(o['task'], split, count, seed=o['seed'], min_length=o['min_length'],
                        max_length=o['max_length'], alphabet_size=o['alphabet_size'])
    for i, example in enumerate(examples):
      yield i, example


def prepare(task: str, data_dir: str, **options) -> SyntheticTranslation:
  """The built dataset of a task (generated on first use, seconds), one directory per generation setting.

  Args:
    task: one of TASKS.
    data_dir: the data directory; the dataset goes to <data_dir>/synthetic/<task>-<hash of the options>.
    **options: generation options (the keys of DEFAULT_OPTIONS); those not given take the defaults.
  """
  options = {**DEFAULT_OPTIONS, **{key: int(value) for key, value in options.items()}, 'task': task}
  # Hashing the options means changing a size never reuses stale data.
  digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
  absl_logger = logging.getLogger('absl')   # tfds warns that a new, still empty dataset folder has no dataset_info
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    builder = SyntheticTranslation(data_dir=os.path.join(data_dir, 'synthetic', f'{task}-{digest}'),
                                   file_format='array_record', **options)
    if not builder.is_prepared():
      tfds.disable_progress_bar()
      builder.download_and_prepare()
  finally:
    absl_logger.setLevel(level)
  return builder
