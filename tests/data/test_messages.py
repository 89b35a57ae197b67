"""Message-catalog corpus on tiny .mo files written here: filters, de-duplication, splits, SentencePiece task."""

import os
import struct

import pytest

from attention_jax import data
from attention_jax.data import messages
from attention_jax.data import tokenizers
from attention_jax.data import translation
from attention_jax.data import translation_task
from tests.helpers.fake_data import fake_message_catalog


def write_mo(path, catalog: dict[str, str]):
  """A GNU .mo file (little-endian, no hash table) holding `catalog` plus a header entry."""
  entries = sorted({'': 'Content-Type: text/plain; charset=UTF-8\n', **catalog}.items())
  ids = [k.encode() for k, _ in entries]
  strs = [v.encode() for _, v in entries]
  n = len(entries)
  originals_at, translations_at = 28, 28 + 8 * n
  data_at = translations_at + 8 * n
  table_o, table_t, blob = [], [], b''
  for s in ids:
    table_o.append((len(s), data_at + len(blob)))
    blob += s + b'\0'
  for s in strs:
    table_t.append((len(s), data_at + len(blob)))
    blob += s + b'\0'
  header = struct.pack('<7I', 0x950412de, 0, n, originals_at, translations_at, 0, 0)
  tables = b''.join(struct.pack('<2I', *t) for t in table_o + table_t)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(header + tables + blob)


def test_filters():
  assert messages.clean_pair('Open the _file', 'Ouvrir le _fichier') == ('Open the file', 'Ouvrir le fichier')
  assert messages.clean_pair('Save &As...', 'Enregistrer &sous...') == ('Save As...', 'Enregistrer sous...')
  for source, target in [('Delete %s now', 'Supprimer %s'), ('Hello {name} there', 'Bonjour {name}'),
                         ('<b>Bold</b> text', '<b>Gras</b>'), ('Quit', 'Quitter'), ('Same text', 'Same text'),
                         ('two\nlines here', 'deux\nlignes'), ('  -h, --help  show help', '  -h aide'),
                         ('Copy %1 items', 'Copier %1')]:
    assert messages.clean_pair(source, target) is None, source


def test_builder_collects_deduplicates_and_splits(tmp_path):
  root = tmp_path / 'pkg' / 'usr' / 'share' / 'locale'
  write_mo(str(root / 'fr' / 'LC_MESSAGES' / 'a.mo'), {
      'Open the file': 'Ouvrir le fichier', 'Close the window': 'Fermer la fenêtre', 'Quit': 'Quitter',
      'Delete %s now': 'Supprimer %s maintenant', 'Print the document': 'Imprimer le document'})
  many = {f'Show panel {i} again': f'Afficher le panneau {i} encore' for i in range(60)}
  write_mo(str(root / 'fr' / 'LC_MESSAGES' / 'b.mo'), {
      'Open the file': 'Ouvre le fichier', 'Save the image as': "Enregistrer l'image sous", **many})
  write_mo(str(root / 'de' / 'LC_MESSAGES' / 'a.mo'), {'Open the file': 'Datei öffnen'})
  files = messages.catalog_files([str(tmp_path / 'pkg')], 'fr')
  assert [os.path.basename(f) for f in files] == ['a.mo', 'b.mo']
  pairs = messages.collect_pairs(files)
  assert pairs[:3] == [('Close the window', 'Fermer la fenêtre'), ('Open the file', 'Ouvrir le fichier'),
                       ('Print the document', 'Imprimer le document')]          # a.mo wins the duplicate
  assert ("Save the image as", "Enregistrer l'image sous") in pairs and len(pairs) == 64
  built = messages.builder('fr', str(tmp_path / 'data'), [str(tmp_path / 'pkg')])
  built.download_and_prepare()
  sources = built.as_data_source()
  seen = {split: [translation_task.record_text(sources[split][i]['source']) for i in range(len(sources[split]))]
          for split in sources}
  assert sorted(sum(seen.values(), [])) == [p[0] for p in pairs]
  for split, names in seen.items():
    assert all(messages.split_of(n) == split for n in names)
  other = messages.builder('de', str(tmp_path / 'data'), [str(tmp_path / 'pkg')])
  assert not other.is_prepared() and other.data_dir != built.data_dir      # languages never share a cache
  assert messages.collect_pairs(messages.catalog_files([str(tmp_path / 'pkg')], 'de')) == [
      ('Open the file', 'Datei öffnen')]
  with pytest.raises(ValueError, match='Valid languages: fr, de, es'):
    messages.MessageCatalogs(language='it', data_dir=str(tmp_path))


def test_message_task_with_sentencepiece(tmp_path):
  catalog = fake_message_catalog(400, 6)
  write_mo(str(tmp_path / 'pkg' / 'fr' / 'LC_MESSAGES' / 'x.mo'), catalog)
  messages.builder('fr', str(tmp_path / 'data'), [str(tmp_path / 'pkg')]).download_and_prepare()
  config = data.default_data_config('messages_en_fr')
  config.data_dir = str(tmp_path / 'data')
  config.vocab_size = 60
  task = translation.make_task(config)
  assert task.source_tokenizer.vocab_size <= 60 and not task.has_alignments
  batch = next(task.train_iterator(batch_size=4, seed=0))
  source_text = task.source_tokenizer.decode(batch['source'][0])
  assert source_text in catalog and task.target_tokenizer.decode(batch['target_out'][0]) == catalog[source_text]
  # Saved with the run and reloaded: the same tokenisation.
  task.save_tokenizers(str(tmp_path / 'run'))
  source_vocab, _, max_source, _ = tokenizers.load_tokenizers(str(tmp_path / 'run'))
  assert source_vocab.encode(source_text) == task.source_tokenizer.encode(source_text)
  assert max_source == task.max_source_length
  again = translation.make_task(config)        # cached model, same ids
  assert again.source_tokenizer.encode('Open the file now') == task.source_tokenizer.encode('Open the file now')


def test_unprepared_messages_name_the_command(tmp_path):
  config = data.default_data_config('messages_en_de')
  config.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='python -m experiments.prepare_data --dataset=messages_en_de'):
    translation.make_task(config)
  config.name = 'wmt'
  with pytest.raises(ValueError, match='Valid datasets: copy, reverse, sort, date, messages_en_fr'):
    translation.make_task(config)
