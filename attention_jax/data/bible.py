"""The Bible, English (King James, 2006 edition) -> Spanish (Reina-Valera 1909), verse by verse, with a word
alignment implied by Strong's numbers.

Both texts come from Debian's SWORD modules (`sword-text-kjv`, `sword-text-sparv`, pinned below), downloaded
with `apt-get download` and unpacked with `dpkg-deb -x` (never installed), and are read with pysword. Both use
KJV versification, so verses pair by reference (~31k pairs; empty verses are skipped). Both public domain.

Every word of both texts that renders an original Hebrew/Greek word is marked up in OSIS with its Strong's
number, `<w lemma="strong:H7225">beginning</w>`. An English word and a Spanish word that share a Strong's
number are aligned: each example keeps these links as int32 [K, 2] (Spanish word index, English word index)
over the whitespace-separated words of the stored texts. The links are approximate (function words carry no
number; a number used twice in a verse links all its words) but good enough to score attention maps.

Splits by chapter (a hash of book and chapter), so no chapter is in two splits: ~90% train, ~5% validation,
~5% test.

    python -m experiments.prepare_data --dataset=bible_en_es        # ~2-3 minutes, needs apt-get
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import debian
from attention_jax.data.splits import hash_split

PINNED_PACKAGES = {'sword-text-kjv': '14.3-1', 'sword-text-sparv': '2.60-1'}   # Debian 12 (bookworm)
MODULES_DIR = os.path.join('usr', 'share', 'sword', 'modules', 'texts', 'ztext')
ENGLISH_MODULE, SPANISH_MODULE = 'engKJV2006eb', 'spaRV1909eb'
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=bible_en_es'

# A verse: (reference 'Gen.1.1', English OSIS markup, Spanish OSIS markup).
Verse = tuple[str, str, str]

_TAG_OR_TEXT = re.compile(r'<[^>]*>|[^<]+')
_STRONG = re.compile(r'strong:([HG])0*(\d+)')
_DROPPED = '¶'       # KJV paragraph sign, not a word


def parse_osis(markup: str) -> tuple[list[str], list[frozenset[str]]]:
  """Words of one OSIS verse and the Strong's numbers each word carries.

  Footnotes (<note>) are dropped; every other tag is removed keeping its text. A word is a maximal run of
  non-space characters (punctuation stays attached); it carries the numbers of every <w lemma> around any of
  its characters. Numbers are normalised without leading zeros ('H0430' -> 'H430').

  Returns:
    (words, numbers): numbers[i] is the frozenset of Strong's numbers of words[i] (empty when none).
  """
  chars: list[str] = []
  char_numbers: list[frozenset[str]] = []
  stack: list[frozenset[str]] = []         # numbers of the open <w> elements
  note_depth = 0
  for piece in _TAG_OR_TEXT.findall(markup):
    if piece.startswith('<'):
      name = re.match(r'</?\s*([\w:]+)', piece)
      name = name.group(1) if name else ''
      closing, self_closing = piece.startswith('</'), piece.endswith('/>')
      if name == 'note' and not self_closing:
        note_depth += -1 if closing else 1
      elif name == 'w' and not self_closing:
        if closing:
          if stack:
            stack.pop()
        else:
          lemma = re.search(r'lemma="([^"]*)"', piece)
          stack.append(frozenset(''.join(m) for m in _STRONG.findall(lemma.group(1) if lemma else '')))
      continue
    if note_depth > 0:
      continue
    current = frozenset().union(*stack) if stack else frozenset()
    for c in _unescape(piece):
      chars.append(' ' if c == _DROPPED else c)
      char_numbers.append(current)
  words, numbers = [], []
  word, word_numbers = '', frozenset()
  for c, n in zip(chars + [' '], char_numbers + [frozenset()]):
    if c.isspace():
      if word:
        words.append(word)
        numbers.append(word_numbers)
      word, word_numbers = '', frozenset()
    else:
      word += c
      word_numbers = word_numbers | n
  return words, numbers


def _unescape(text: str) -> str:
  return text.replace('&lt;', '<').replace('&gt;', '>').replace('&quot;', '"').replace('&apos;', "'").replace(
      '&amp;', '&')


def word_alignment(target_numbers: list[frozenset[str]], source_numbers: list[frozenset[str]]) -> np.ndarray:
  """Links (target word, source word) between words that share a Strong's number, int32 [K, 2], sorted."""
  by_number: dict[str, list[int]] = {}
  for s, numbers in enumerate(source_numbers):
    for n in numbers:
      by_number.setdefault(n, []).append(s)
  links = sorted({(t, s) for t, numbers in enumerate(target_numbers) for n in numbers for s in by_number.get(n, ())})
  return np.asarray(links, np.int32).reshape(-1, 2)


def verse_example(reference: str, english_markup: str, spanish_markup: str) -> dict | None:
  """A dataset record (English source, Spanish target, gold word links), or None when a side is empty."""
  source_words, source_numbers = parse_osis(english_markup)
  target_words, target_numbers = parse_osis(spanish_markup)
  if not source_words or not target_words:
    return None
  return {'source': ' '.join(source_words), 'target': ' '.join(target_words),
          'alignment': word_alignment(target_numbers, source_numbers), 'reference': reference}


def split_of(reference: str) -> str:
  """'train' / 'validation' / 'test' from a hash of the chapter of a 'Book.chapter.verse' reference."""
  return hash_split(reference.rsplit('.', 1)[0], buckets=20)


def sword_verses(english_module_dir: str, spanish_module_dir: str, books: Iterable[str] | None = None
                 ) -> Iterator[Verse]:
  """Every verse of two ztext SWORD modules in KJV order, as raw OSIS markup (pysword, ~100 s for all).

  Args:
    english_module_dir, spanish_module_dir: directories holding ot.bzs/ot.bzv/ot.bzz and nt.* files.
    books: OSIS book names to read (default: all 66).
  """
  from pysword.bible import SwordBible      # only preparing the corpus needs it
  english = SwordBible(english_module_dir, 'ztext', 'kjv', 'utf-8', 'OSIS')
  spanish = SwordBible(spanish_module_dir, 'ztext', 'kjv', 'utf-8', 'OSIS')
  wanted = None if books is None else {b.lower() for b in books}
  for testament in ('ot', 'nt'):
    for book in english.get_structure().get_books().get(testament, []):
      if wanted is not None and book.osis_name.lower() not in wanted:
        continue
      for chapter, length in enumerate(book.chapter_lengths, start=1):
        for verse in range(1, length + 1):
          ref = dict(books=[book.osis_name], chapters=[chapter], verses=[verse], clean=False)
          yield f'{book.osis_name}.{chapter}.{verse}', english.get(**ref), spanish.get(**ref)


class BibleEnEs(tfds.core.GeneratorBasedBuilder):
  """English -> Spanish Bible verses with Strong's-number word alignments (array_record).

  `verses` is a callable returning the (reference, English OSIS, Spanish OSIS) triples: sword_verses over
  the unpacked Debian modules when preparing, anything (e.g. a few hand-written verses) in tests.
  """

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, verses: Callable[[], Iterable[Verse]] | None = None, **kwargs):
    self._verses = verses
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('King James Bible (English) -> Reina-Valera 1909 (Spanish) verse pairs from the Debian '
                     f'SWORD modules {PINNED_PACKAGES}, with word links from shared Strong\'s numbers.'),
        features=tfds.features.FeaturesDict({
            'source': tfds.features.Text(),
            'target': tfds.features.Text(),
            'alignment': tfds.features.Tensor(shape=(None, 2), dtype=np.int32),   # (target word, source word)
            'reference': tfds.features.Text(),                                     # 'Gen.1.1'
        }),
        homepage='https://crosswire.org/sword/',
        license='Public domain',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._verses is None:
      raise FileNotFoundError(f'The Bible modules are not unpacked. Run: {PREPARE_COMMAND}')
    examples = [e for e in (verse_example(*v) for v in self._verses()) if e is not None]
    return {split: self._generate_examples(examples, split) for split in ('train', 'validation', 'test')}

  def _generate_examples(self, examples, split):
    for i, example in enumerate(examples):
      if split_of(example['reference']) == split:
        yield i, example


def builder(data_dir: str, verses: Callable[[], Iterable[Verse]] | None = None) -> BibleEnEs:
  return BibleEnEs(verses=verses, data_dir=os.path.join(data_dir, 'bible_en_es'), file_format='array_record')


def prepare(data_dir: str, *, books: Iterable[str] | None = None) -> BibleEnEs:
  """Downloads and unpacks the pinned SWORD packages, then builds the dataset (what prepare_data runs)."""
  english_root, spanish_root = debian.download_packages(os.path.join(data_dir, 'downloads', 'debian'),
                                                        PINNED_PACKAGES, purpose='the Bible modules')
  english_dir = os.path.join(english_root, MODULES_DIR, ENGLISH_MODULE)
  spanish_dir = os.path.join(spanish_root, MODULES_DIR, SPANISH_MODULE)
  built = builder(data_dir, lambda: sword_verses(english_dir, spanish_dir, books))
  tfds.disable_progress_bar()
  built.download_and_prepare()
  return built
