"""Software message catalogs as a parallel corpus (En -> Fr / De / Es), the way OPUS GNOME/KDE are made.

Every gettext catalog (`<lang>/LC_MESSAGES/*.mo`) maps English source strings (msgid) to translations
(msgstr). We collect them from pinned Debian packages (downloaded with `apt-get download`, unpacked with
`dpkg-deb -x`, never installed) plus the machine's own /usr/share/locale, and keep clean sentence pairs:

  * no format placeholders (%s, %d, %(name)s, {name}, $1, %1), markup (<b>, &amp;) or control characters;
  * keyboard accelerators removed (_File, &File, ~File -> File);
  * at least 2 and at most 20 words, single line, translated (msgstr != msgid), no plural forms;
  * one pair per English source (the first in sorted file order), so no source is in two splits.
Splits: 90 / 5 / 5 by a hash of the English source. Licences are those of the packages (GPL, LGPL, MPL).

    python -m experiments.prepare_data --dataset=messages_en_fr
"""

from __future__ import annotations

import gettext
import glob
import os
import re
from collections.abc import Iterable, Iterator

import tensorflow_datasets as tfds

from attention_jax.data import debian
from attention_jax.data.splits import hash_split

LANGUAGES = ('fr', 'de', 'es')
# Pinned Debian 12 package versions whose message catalogs are added to the machine's own.
PINNED_PACKAGES = {
    'gcc-12-locales': '12.2.0-14+deb12u1',
    'inkscape': '1.2.2-2+b1',
    'gnucash-common': '1:4.13-1',
}
SYSTEM_LOCALE_DIR = '/usr/share/locale'

_PLACEHOLDER = re.compile(r'%[-+ #0-9.*]*[a-zA-Z%]|%\([^)]*\)|\{[^}]*\}|\$\d|%\d|\\[nt]')
_MARKUP = re.compile(r'<[^>]+>|&[a-zA-Z]+;|&#\d+;')
_ACCELERATOR = re.compile(r'(?<![\w&])[_&~](?=\w)')


def clean_text(text: str) -> str | None:
  """The string without accelerators, or None if it has placeholders, markup or several lines."""
  if not text or '\n' in text or '\t' in text or _PLACEHOLDER.search(text) or _MARKUP.search(text):
    return None
  if any(ord(c) < 32 for c in text):
    return None
  text = _ACCELERATOR.sub('', text).strip()
  return re.sub(r'\s+', ' ', text) or None


def clean_pair(source: str, target: str, *, min_words: int = 2, max_words: int = 20) -> tuple[str, str] | None:
  """A (source, target) pair that passes every filter of the module docstring, or None."""
  if not isinstance(source, str) or not isinstance(target, str):
    return None                                    # plural forms are keyed by tuples
  source, target = clean_text(source), clean_text(target)
  if source is None or target is None or source == target:
    return None
  if not min_words <= len(source.split()) <= max_words or len(target.split()) > 2 * max_words:
    return None
  if source.lstrip().startswith('-'):              # command-line option help
    return None
  return source, target


def read_catalog(path: str) -> dict:
  """msgid -> msgstr of one .mo file (the header entry removed)."""
  with open(path, 'rb') as f:
    catalog = dict(gettext.GNUTranslations(f)._catalog)   # the parsed table; no public accessor exists
  catalog.pop('', None)
  return catalog


def catalog_files(roots: Iterable[str], language: str) -> list[str]:
  """Every <root>/**/<language>/LC_MESSAGES/*.mo, sorted for a deterministic first-wins order."""
  files = set()
  for root in roots:
    files.update(glob.glob(os.path.join(root, '**', language, 'LC_MESSAGES', '*.mo'), recursive=True))
  return sorted(files)


def collect_pairs(files: Iterable[str]) -> list[tuple[str, str]]:
  """Clean, de-duplicated (by English source) pairs from .mo files, in file order."""
  pairs, seen = [], set()
  for path in files:
    try:
      catalog = read_catalog(path)
    except (OSError, UnicodeDecodeError, ValueError):
      continue
    for source, target in sorted((k, v) for k, v in catalog.items() if isinstance(k, str)):
      pair = clean_pair(source, target)
      if pair and pair[0] not in seen:
        seen.add(pair[0])
        pairs.append(pair)
  return pairs


def split_of(source: str) -> str:
  """'train' (90%), 'validation' (5%) or 'test' (5%) from a hash of the English source."""
  return hash_split(source, buckets=20)


def download_packages(directory: str, packages: dict[str, str] = PINNED_PACKAGES) -> list[str]:
  """apt-get download + dpkg-deb -x of the pinned packages; returns the unpacked roots."""
  return debian.download_packages(directory, packages, purpose='the message catalogs')


class MessageCatalogs(tfds.core.GeneratorBasedBuilder):
  """En -> <language> message pairs from gettext catalogs under `roots` (array_record)."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, language: str = 'fr', roots: Iterable[str] = (), **kwargs):
    if language not in LANGUAGES:
      raise ValueError(f'Unknown message-catalog language {language!r}. Valid languages: {", ".join(LANGUAGES)}.')
    self._language, self._roots = language, tuple(roots)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'English -> {self._language} software messages from gettext catalogs of Debian packages.',
        features=tfds.features.FeaturesDict({'source': tfds.features.Text(), 'target': tfds.features.Text()}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    pairs = collect_pairs(catalog_files(self._roots, self._language))
    return {split: self._generate_examples(pairs, split) for split in ('train', 'validation', 'test')}

  def _generate_examples(self, pairs, split) -> Iterator[tuple[int, dict]]:
    for i, (source, target) in enumerate(pairs):
      if split_of(source) == split:
        yield i, {'source': source, 'target': target}


PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=messages_en_{language}'


def builder(language: str, data_dir: str, roots: Iterable[str] = ()) -> MessageCatalogs:
  # One directory per language: the tfds name and version are the same for all of them.
  return MessageCatalogs(language=language, roots=roots, data_dir=os.path.join(data_dir, 'messages', language),
                         file_format='array_record')


def prepare(language: str, data_dir: str, *, include_system: bool = True) -> MessageCatalogs:
  """Downloads the pinned packages, unpacks them and builds the dataset (what prepare_data runs)."""
  roots = download_packages(os.path.join(data_dir, 'downloads', 'debian'))
  if include_system and os.path.isdir(SYSTEM_LOCALE_DIR):
    roots.append(SYSTEM_LOCALE_DIR)
  built = builder(language, data_dir, roots)
  built.download_and_prepare()
  return built
