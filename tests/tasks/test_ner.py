"""CoNLL-2003 NER: the entity metric against hand-counted cases, the data paths (local CoNLL files without
TensorFlow; the tfds catalog through tfds.testing.mock_data), the tagger, and the task end to end."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import tasks
from attention_jax.data import ner as ner_data
from attention_jax.metrics.ner import entities, entity_scores
from attention_jax.models.tagger import AttentionTagger
from attention_jax.tasks import ner
from configs import ner_conll2003

PEOPLE, PLACES, GROUPS = ['Peter Blackburn', 'Anna Smith', 'Li Wei'], ['Paris', 'New York', 'Bonn'], ['EU', 'Reuters']


def _sentence(rng):
  """'word POS chunk NER' lines of one sentence in CoNLL-2003's IOB1 (entities start with I-)."""
  lines = []
  for words, kind, verb in ((PEOPLE, 'PER', 'met'), (PLACES, 'LOC', 'in'), (GROUPS, 'ORG', 'said')):
    if rng.random() < 0.7:
      for i, word in enumerate(words[rng.integers(len(words))].split()):
        lines.append(f'{word} NNP I-NP I-{kind}')
      lines.append(f'{verb} VB I-VP O')
  lines.append('. . O O')
  return lines


def write_fake_conll(directory, sentences=(40, 10, 10)):
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  for name, count in zip(('train.txt', 'valid.txt', 'test.txt'), sentences):
    lines = ['-DOCSTART- -X- -X- O', '']
    for _ in range(count):
      lines += _sentence(rng) + ['']
    with open(os.path.join(directory, name), 'w') as f:
      f.write('\n'.join(lines) + '\n')


def test_entities_follow_conlleval():
  # IOB1: I- starts an entity after O or another type; B- separates two adjacent entities of one type.
  tags = ['I-ORG', 'I-ORG', 'O', 'I-PER', 'B-PER', 'I-PER', 'I-LOC', 'B-LOC', 'B-MISC']
  assert entities(tags) == {('ORG', 0, 2), ('PER', 3, 4), ('PER', 4, 6), ('LOC', 6, 7), ('LOC', 7, 8),
                            ('MISC', 8, 9)}
  assert entities(['B-PER', 'I-ORG']) == {('PER', 0, 1), ('ORG', 1, 2)}       # a type change ends an entity
  assert entities(['O', 'O']) == set()


def test_entity_scores_by_hand():
  gold = [['B-PER', 'I-PER', 'O', 'B-LOC'], ['B-ORG', 'O']]
  predicted = [['B-PER', 'O', 'O', 'B-LOC'], ['B-ORG', 'B-MISC']]
  # gold: PER(0,2), LOC(3,4), ORG(0,1); predicted: PER(0,1) wrong boundary, LOC right, ORG right, MISC spurious.
  scores = entity_scores(gold, predicted)
  assert scores['precision'] == pytest.approx(2 / 4) and scores['recall'] == pytest.approx(2 / 3)
  assert scores['f1'] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
  assert scores['f1_LOC'] == 1.0 and scores['f1_PER'] == 0.0 and scores['precision_MISC'] == 0.0
  assert entity_scores(gold, gold)['f1'] == 1.0
  with pytest.raises(ValueError, match='Sentence 1: 2 gold tags but 1 predicted'):
    entity_scores(gold, [gold[0], ['O']])


def test_conll_files_build_without_tensorflow_and_batch_by_bucket(tmp_path):
  write_fake_conll(str(tmp_path / 'conll'))
  builder = ner_data.prepare(str(tmp_path / 'data'), source_file=str(tmp_path / 'conll'))
  sources = ner_data.load_sources(str(tmp_path / 'data'))
  assert {k: len(v) for k, v in sources.items()} == {'train': 40, 'validation': 10, 'test': 10}
  assert builder.info.features['ner'].feature.names == list(ner_data.NER_TAGS)
  want = sorted((tuple(s['tokens']), tuple(s['ner'])) for s in ner_data.read_conll(str(tmp_path / 'conll' / 'train.txt')))
  records = [sources['train'][i] for i in range(40)]        # (tfds stores the records in its own shuffled order)
  got = sorted((tuple(t.decode() if isinstance(t, bytes) else t for t in r['tokens']),
                tuple(ner_data.NER_TAGS[t] for t in r['ner'])) for r in records)
  assert got == want
  vocabulary = ner_data.TagVocabulary.from_source(sources['train'])
  assert vocabulary.encode(['PETER', 'unseenword']) == [vocabulary.index['peter'], 1]        # lower-cased; UNK
  iterator = ner_data.batches(sources['train'], vocabulary, batch_size=4, bucket_lengths=(4, 8, 16), seed=0)
  for _ in range(5):
    batch = next(iterator)
    longest = int(batch['length'].max())
    assert batch['words'].shape[1] == min(b for b in (4, 8, 16) if b >= longest)
    padding = np.arange(batch['words'].shape[1]) >= batch['length'][:, None]
    real = batch['length'] > 0                      # (a bucket's last batch is filled with all-zero rows)
    assert np.all((batch['tags'][real] == ner_data.PAD_TAG) == padding[real])
    assert np.all((batch['words'] == 0) == padding)
  # Two processes: the same bucket at every step, each its own half of the global batch.
  halves = [ner_data.batches(sources['train'], vocabulary, batch_size=4, bucket_lengths=(4, 8, 16), seed=0,
                             process_index=p, process_count=2) for p in (0, 1)]
  whole = ner_data.batches(sources['train'], vocabulary, batch_size=4, bucket_lengths=(4, 8, 16), seed=0)
  for _ in range(5):
    parts, full = [next(h) for h in halves], next(whole)
    np.testing.assert_array_equal(np.concatenate([p['words'] for p in parts]), full['words'])
  assert [ner_data.CASES[ner_data.case_of(w)] for w in ('Paris', 'EU', 'in', '1996', '.')] == \
      ['title', 'upper', 'lower', 'digit', 'other']
  with open(tmp_path / 'conll' / 'test.txt', 'a') as f:
    f.write('broken line\n')
  with pytest.raises(ValueError, match='test.txt:.*expected "word POS chunk NER"'):
    list(ner_data.read_conll(str(tmp_path / 'conll' / 'test.txt')))
  with pytest.raises(FileNotFoundError, match='prepare_data --dataset=conll2003'):
    ner_data.load_sources(str(tmp_path / 'nothing'))


@pytest.mark.skipif(importlib.util.find_spec('tensorflow') is None,
                    reason="tfds's catalog (and so its mock data) needs TensorFlow, which the test set-up does not "
                           'install; the local-file path is tested without it')
def test_catalog_path_with_tfds_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = ner_data.catalog_builder('unused')
    assert builder.info.features['ner'].feature.names == list(ner_data.NER_TAGS)
    source = builder.as_data_source(split='train')
    vocabulary = ner_data.TagVocabulary.from_source(source)
    batch = next(ner_data.evaluation_batches(source, vocabulary, batch_size=3, bucket_lengths=(8, 16)))
    assert batch['words'].shape[0] == 3 and len(batch['text']) == 3


def test_tagger_attends_within_the_sentence_only():
  model = AttentionTagger(vocab_size=20, num_cases=len(ner_data.CASES), num_tags=9, embed_dim=4, case_dim=2,
                          hidden_dim=4)
  words = jnp.asarray([[5, 6, 7, 0, 0], [3, 4, 5, 6, 7]])
  cases = jnp.ones_like(words)
  params = model.init(jax.random.key(0), words, cases)['params']
  logits, weights = model.apply({'params': params}, words, cases)
  assert logits.shape == (2, 5, 9) and weights.shape == (2, 5, 5)
  np.testing.assert_allclose(np.asarray(weights.sum(-1)), 1.0, rtol=1e-5)
  assert np.all(np.asarray(weights[0, :, 3:]) == 0)                      # padding gets no weight
  # The real words' outputs do not depend on how much padding follows them.
  short_logits, _ = model.apply({'params': params}, words[:1, :3], cases[:1, :3])
  np.testing.assert_allclose(np.asarray(short_logits[0]), np.asarray(logits[0, :3]), rtol=1e-5, atol=1e-6)
  baseline = AttentionTagger(vocab_size=20, num_cases=len(ner_data.CASES), num_tags=9, attention='none', embed_dim=4,
                             case_dim=2, hidden_dim=4)
  b_params = baseline.init(jax.random.key(0), words, cases)['params']
  assert baseline.apply({'params': b_params}, words, cases)[1] is None and 'self_attention' not in b_params


def test_ner_trains_end_to_end_on_conll_files(tmp_path):
  write_fake_conll(str(tmp_path / 'conll'))
  ner_data.prepare(str(tmp_path / 'data'), source_file=str(tmp_path / 'conll'))
  config = ner_conll2003.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'data')
  workdir = str(tmp_path / 'run')
  results = tasks.run(config, workdir)
  assert {'f1', 'precision', 'recall', 'token_accuracy'} <= set(results['test'])
  assert os.path.getsize(os.path.join(workdir, 'attention.png')) > 1000
  assert os.path.exists(os.path.join(workdir, 'attention', 'sentence_1.png'))
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['test'] == results['test']
  config.model.attention = 'attentive'
  with pytest.raises(ValueError, match='Valid attentions: self, none'):
    ner.validate_config(config)
  config.model.attention = 'self'
  config.model.scorer = 'location_aware'
  with pytest.raises(ValueError, match="Scorer 'location_aware' cannot score self-attention.*Valid scorers: additive"):
    ner.validate_config(config)
