"""Summarisation data: Debian package long descriptions -> their one-line synopsis.

Every Debian package has a synopsis (`Description-en: <synopsis>`) and a long description (the indented lines
after it); the archive's `Translation-en` index holds both for every package of a release (bookworm main: 63,956
entries). The long description is the document, the synopsis its title-like summary:

    long: 'The Symfony PasswordHasher Component provides secure password hashing utilities. Symfony is a PHP
           framework, a set of tools and a development methodology.'
    synopsis: 'password hashing utilities - Symfony Component'

Cleaning: paragraphs (' .' lines) and list items are joined into one line of text with single spaces; pairs
whose synopsis has fewer than 2 words or whose long description has fewer than 5 are dropped; one pair per
distinct long description (the first in file order), so no document has two targets. Splits: 90 / 5 / 5 by a
hash of the long description's FIRST paragraph, which a family of packages (libfoo1, libfoo-dev, foo-doc)
shares: no family is in two splits, so test documents are not near-copies of training ones.

The index is not pinned (it changes with every point release), so the SHA-256 of the decompressed file, its
origin and its size are stored in the built dataset (`builder.info.metadata`) and printed by the prepare
command. Getting the file (`prepare`): on Debian/Ubuntu, `apt-get update` into a private lists directory with
`Acquire::Languages=en` (the machine's own apt state is not touched); elsewhere a download from deb.debian.org;
or any local copy (`--source_file`, plain, .xz, .gz or .bz2).

    python -m experiments.prepare_data --dataset=debian_summaries
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable, Iterator

import tensorflow_datasets as tfds

from attention_jax.data.splits import hash_split

MIN_SYNOPSIS_WORDS = 2
MIN_DESCRIPTION_WORDS = 5
DEFAULT_SUITE = 'bookworm'
DOWNLOAD_URL = 'https://deb.debian.org/debian/dists/{suite}/main/i18n/Translation-en.xz'
APT_HELPER = '/usr/lib/apt/apt-helper'     # decompresses apt's stored indexes (.lz4 by default)
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=debian_summaries'


def parse_translation_file(text: str) -> Iterator[tuple[str, str, str]]:
  """(package, synopsis, long description paragraphs joined by '\\n') for each stanza of a Translation-en text."""
  for stanza in text.split('\n\n'):
    package, synopsis, body, in_description = '', None, [], False
    for line in stanza.split('\n'):
      if line.startswith('Package:'):
        package, in_description = line.split(':', 1)[1].strip(), False
      elif line.startswith('Description-en:'):
        synopsis, in_description = line.split(':', 1)[1].strip(), True
      elif in_description and line.startswith(' '):
        body.append(line[1:])
      else:
        in_description = False
    if synopsis is not None:
      yield package, synopsis, _paragraphs(body)


def _paragraphs(lines: list[str]) -> str:
  """Debian long-description lines -> paragraphs (one per line): ' .' separates paragraphs, spaces collapse."""
  paragraphs, current = [], []
  for line in lines:
    if line.strip() == '.':
      paragraphs.append(' '.join(current))
      current = []
    else:
      current.append(line.strip())
  paragraphs.append(' '.join(current))
  return '\n'.join(re.sub(r'\s+', ' ', p).strip() for p in paragraphs if p.strip())


def clean_pairs(stanzas: Iterable[tuple[str, str, str]]) -> list[dict[str, str]]:
  """Filtered, de-duplicated examples {'package', 'document', 'summary', 'family'} of parsed stanzas (the output
  of parse_translation_file)."""
  examples, seen = [], set()
  for package, synopsis, paragraphs in stanzas:
    document = ' '.join(paragraphs.split('\n'))
    summary = re.sub(r'\s+', ' ', synopsis).strip()
    if len(summary.split()) < MIN_SYNOPSIS_WORDS or len(document.split()) < MIN_DESCRIPTION_WORDS:
      continue
    if document in seen:
      continue
    seen.add(document)
    examples.append({'package': package, 'document': document, 'summary': summary,
                     'family': paragraphs.split('\n', 1)[0]})
  return examples


def split_of(family: str) -> str:
  """'train' (90%), 'validation' (5%) or 'test' (5%) from a hash of the first paragraph."""
  return hash_split(family, buckets=20)


def read_index(path: str) -> str:
  """The text of a Translation-en file: plain, .xz, .gz, .bz2, or (with apt's helper) .lz4."""
  if path.endswith('.lz4'):
    if not os.path.exists(APT_HELPER):
      raise RuntimeError(f'{path} is lz4-compressed; decompress it first (e.g. `lz4 -d`), or pass the .xz file.')
    return subprocess.run([APT_HELPER, 'cat-file', path], check=True, capture_output=True).stdout.decode('utf-8')
  openers = {'.xz': lzma.open, '.gz': gzip.open, '.bz2': bz2.open}
  opener = openers.get(os.path.splitext(path)[1], open)
  with opener(path, 'rb') as f:
    return f.read().decode('utf-8')


class DebianSummaries(tfds.core.GeneratorBasedBuilder):
  """Long description -> synopsis pairs from one Translation-en file (array_record).

  Features: 'document', 'summary', 'package' (text). Metadata: 'source_sha256', 'source', 'source_bytes',
  'num_stanzas'.
  """

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, source_file: str | None = None, source_name: str = '', **kwargs):
    self._source_file, self._source_name = source_file, source_name
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Debian package long descriptions (document) and their one-line synopses (summary), from '
                    'the archive\'s Translation-en index; split by a hash of the first paragraph.',
        features=tfds.features.FeaturesDict({'document': tfds.features.Text(), 'summary': tfds.features.Text(),
                                             'package': tfds.features.Text()}),
        supervised_keys=('document', 'summary'),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    if not self._source_file:
      raise ValueError(f'No Translation-en file given to build from. Run: {PREPARE_COMMAND}')
    text = read_index(self._source_file)
    raw = text.encode('utf-8')
    stanzas = list(parse_translation_file(text))
    self.info.metadata.update({
        'source_sha256': hashlib.sha256(raw).hexdigest(), 'source_bytes': len(raw),
        'source': self._source_name or os.path.basename(self._source_file), 'num_stanzas': len(stanzas),
    })
    examples = clean_pairs(stanzas)
    return {split: self._generate_examples(examples, split) for split in ('train', 'validation', 'test')}

  def _generate_examples(self, examples, split) -> Iterator[tuple[int, dict]]:
    for i, example in enumerate(examples):
      if split_of(example['family']) == split:
        yield i, {k: example[k] for k in ('document', 'summary', 'package')}


def builder(data_dir: str, source_file: str | None = None, source_name: str = '') -> DebianSummaries:
  return DebianSummaries(source_file=source_file, source_name=source_name,
                         data_dir=os.path.join(data_dir, 'debian_summaries'), file_format='array_record')


def fetch_with_apt(directory: str) -> tuple[str, str]:
  """`apt-get update` with English descriptions into `directory` (private lists and cache; no root state touched).

  Returns:
    (path of the largest main/i18n/Translation-en index, its origin as apt names it).
  """
  lists, cache = os.path.join(directory, 'lists'), os.path.join(directory, 'cache')
  os.makedirs(os.path.join(lists, 'partial'), exist_ok=True)
  os.makedirs(os.path.join(cache, 'archives', 'partial'), exist_ok=True)
  command = ['apt-get', 'update', '-o', f'Dir::State::Lists={os.path.abspath(lists)}',
             '-o', f'Dir::Cache={os.path.abspath(cache)}', '-o', 'Acquire::Languages=en']
  result = subprocess.run(command, capture_output=True, text=True)
  candidates = glob.glob(os.path.join(lists, '*_main_i18n_Translation-en*'))
  if result.returncode or not candidates:
    raise RuntimeError(f'`{" ".join(command)}` found no main Translation-en index:\n{result.stderr[-1500:]}\n'
                       f'Download {DOWNLOAD_URL.format(suite=DEFAULT_SUITE)} yourself and run '
                       f'{PREPARE_COMMAND} --source_file=PATH')
  path = max(candidates, key=os.path.getsize)     # the release itself, not its small -updates/-security indexes
  return path, os.path.basename(path)


def download(directory: str, suite: str = DEFAULT_SUITE) -> tuple[str, str]:
  """Downloads the suite's Translation-en.xz from deb.debian.org (needs the internet); returns (path, URL)."""
  url = DOWNLOAD_URL.format(suite=suite)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'{suite}_Translation-en.xz')
  if not os.path.exists(path):
    with urllib.request.urlopen(url, timeout=60) as response, open(path + '.tmp', 'wb') as f:
      shutil.copyfileobj(response, f)
    os.replace(path + '.tmp', path)      # a killed download is redone, not half-used
  return path, url


def prepare(data_dir: str, source_file: str | None = None) -> DebianSummaries:
  """Gets the index (a given file, else apt, else a download) and builds the dataset (what prepare_data runs)."""
  downloads = os.path.join(data_dir, 'downloads', 'debian_summaries')
  if source_file:
    name = os.path.basename(source_file)
  elif shutil.which('apt-get'):
    source_file, name = fetch_with_apt(downloads)
  else:
    source_file, name = download(downloads)
  built = builder(data_dir, source_file, name)
  built.download_and_prepare()
  return built
