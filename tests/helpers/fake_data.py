"""Small fake data in the real file formats, for tests that build the application datasets."""

import gzip
import os

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
