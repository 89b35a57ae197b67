"""Small fake data in the real file formats, for tests that build the application datasets."""

import gzip
import os
import struct
import zlib

import numpy as np

from attention_jax.data import sentiment as sentiment_data

POSITIVE = ['a great and wonderful film', 'i love this , truly great', 'what a wonderful , happy day',
            'great acting and a lovely story']
NEGATIVE = ['a terrible and boring film', 'i hate this , truly awful', 'what a sad , awful day',
            'boring acting and a dull story']


def write_fake_ratings(directory):
  """Four *_GroundTruth.txt files in the real format (id, mean rating, sentence), 60 lines each."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  for domain, filename in sentiment_data.DOMAIN_FILES.items():
    lines = []
    for i in range(60):
      positive = i % 3 != 0
      text = (POSITIVE if positive else NEGATIVE)[i % 4] + f' number {i}'
      score = rng.uniform(1.0, 3.5) if positive else rng.uniform(-3.5, -1.0)
      if i % 10 == 5:
        score, text = 0.1, f'the report came out on day {i}'        # neutral
      lines.append(f'{i}_{domain[:2]}\t{score:.4f}\t{text}')
    with open(os.path.join(directory, filename), 'w', encoding='utf-8') as f:
      f.write('\r\n'.join(lines) + '\r\n')                              # the real files use CRLF


def write_fake_digits(path, count=120):
  """A digits.csv.gz in scikit-learn's format: 64 pixel values (0..16) and the label; digit d is a bar at d."""
  rng = np.random.default_rng(0)
  rows = []
  for i in range(count):
    label = i % 10
    image = rng.integers(0, 3, (8, 8))
    image[:, label % 8] = 16
    image[label // 8 * 7, :] = 16 if label >= 8 else image[label // 8 * 7, :]
    rows.append(','.join(str(v) for v in [*image.ravel().tolist(), label]))
  with gzip.open(path, 'wt') as f:
    f.write('\n'.join(rows) + '\n')


def fake_message_catalog(pairs: int, max_words: int) -> dict[str, str]:
  """{English message: French message}: `pairs` draws of 2 to max_words - 1 words of a tiny word-for-word lexicon
  (duplicates collapse), seeded, so every caller with the same arguments gets the same catalog."""
  rng = np.random.default_rng(0)
  words_en = ['open', 'close', 'save', 'print', 'the', 'file', 'window', 'image', 'document', 'now', 'all']
  words_fr = ['ouvrir', 'fermer', 'enregistrer', 'imprimer', 'le', 'fichier', 'fenêtre', 'image', 'document',
              'maintenant', 'tout']
  catalog = {}
  for _ in range(pairs):
    idx = rng.integers(0, len(words_en), rng.integers(2, max_words))
    catalog[' '.join(words_en[i] for i in idx).capitalize()] = ' '.join(words_fr[i] for i in idx).capitalize()
  return catalog


# --- the Bible: two SWORD ztext modules (KJV / RV1909 layout) with Strong's-number markup ------------------------
GEN_1_1_EN = ('In the <w lemma="strong:H7225">beginning</w> <w lemma="strong:H0430">God</w> '
              '<w lemma="strong:H1254">created</w> the <w lemma="strong:H8064">heaven</w> '
              '<w lemma="strong:H0853 strong:H0776">and</w> the <w lemma="strong:H0776">earth</w>.'
              '<note placement="foot"><reference type="annotateRef">1.1 </reference>Heb. note</note> ')
GEN_1_1_ES = ('<w lemma="strong:H7225">EN el principio</w> <w lemma="strong:H1254">crió</w> '
              '<w lemma="strong:H0430">Dios</w> <w lemma="strong:H8064">los cielos</w> '
              '<w lemma="strong:H0776">y la tierra</w>. ')


def write_ztext_module(directory, verses):
  """A SWORD ztext module (one zlib block per testament) with the given {(book, chapter, verse): OSIS text}."""
  from pysword.books import BibleStructure
  structure = BibleStructure('kjv')
  by_testament = {}
  for (book, chapter, verse), text in verses.items():
    [(testament, [index])] = structure.ref_to_indicies(books=[book], chapters=[chapter], verses=[verse]).items()
    by_testament.setdefault(testament, {})[index] = text.encode('utf-8')
  os.makedirs(directory, exist_ok=True)
  for testament, texts in by_testament.items():
    block, records = b'', []
    for index in range(max(texts) + 1):
      text = texts.get(index, b'')
      records.append(struct.pack('<IIH', 0, len(block), len(text)))
      block += text
    compressed = zlib.compress(block)
    with open(os.path.join(directory, f'{testament}.bzz'), 'wb') as f:
      f.write(compressed)
    with open(os.path.join(directory, f'{testament}.bzs'), 'wb') as f:
      f.write(struct.pack('<III', 0, len(compressed), len(block)))
    with open(os.path.join(directory, f'{testament}.bzv'), 'wb') as f:
      f.write(b''.join(records))


CHAPTERS = (('Gen', (1, 2, 18)), ('Ruth', (1, 4)))
NAMES_EN = ['Adam', 'Seth', 'Enos', 'Cainan', 'Jared', 'Enoch', 'Noah', 'Shem']
NAMES_ES = ['Adán', 'Set', 'Enós', 'Cainán', 'Jared', 'Enoc', 'Noé', 'Sem']


def fake_verses():
  """Verses 1-20 of Genesis 1, 2, 18 and Ruth 1, 4 (chapters of all three splits): generated sentences with
  Strong's numbers on the names and the verb."""
  verses = {('Gen', 1, 1): GEN_1_1_EN}, {('Gen', 1, 1): GEN_1_1_ES}
  rng = np.random.default_rng(0)
  for book, chapters in CHAPTERS:
    for chapter in chapters:
      for verse in range(1 + (chapter == 1 and book == 'Gen'), 21):
        a, b = rng.choice(len(NAMES_EN), 2, replace=False)
        verses[0][(book, chapter, verse)] = (
            f'And <w lemma="strong:H{100 + a}">{NAMES_EN[a]}</w> <w lemma="strong:H3205">begat</w> '
            f'<w lemma="strong:H{100 + b}">{NAMES_EN[b]}</w>.')
        verses[1][(book, chapter, verse)] = (
            f'Y <w lemma="strong:H{100 + a}">{NAMES_ES[a]}</w> <w lemma="strong:H3205">engendró</w> '
            f'á <w lemma="strong:H{100 + b}">{NAMES_ES[b]}</w>.')
  return verses


def write_fake_bible(root):
  """The English and Spanish fake modules of `fake_verses` under root/en and root/es; returns their two paths."""
  english, spanish = fake_verses()
  write_ztext_module(os.path.join(root, 'en'), english)
  write_ztext_module(os.path.join(root, 'es'), spanish)
  return os.path.join(root, 'en'), os.path.join(root, 'es')


def write_idx(path, array: np.ndarray):
  """An IDX file as in the MNIST distribution: magic 0x00000803/0x00000801 (uint8, rank), big-endian dims, data."""
  header = bytes([0, 0, 0x08, array.ndim]) + b''.join(int(d).to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion(directory):
  """The four IDX files of the Fashion-MNIST distribution: 50 training and 20 test images of 28x28."""
  rng = np.random.default_rng(0)
  directory.mkdir()
  for part, count in (('train', 50), ('t10k', 20)):
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, (count, 28, 28))
    images[np.arange(count), :, labels * 2] = 255                 # class d: a bright column at 2d
    write_idx(str(directory / f'{part}-images-idx3-ubyte.gz'), images)
    write_idx(str(directory / f'{part}-labels-idx1-ubyte.gz'), labels)
