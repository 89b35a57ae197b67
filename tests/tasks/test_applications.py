"""Sentiment and digit-strip applications on tiny data made here: builders, splits, pipelines, training."""

import gzip
import json
import os

import numpy as np
import pytest

from attention_jax import special_tokens
from attention_jax.data import digit_strips as digit_data
from attention_jax.data import sentiment as sentiment_data
from attention_jax.tasks import digit_strips
from attention_jax.tasks import sentiment
from tests.helpers.fake_data import write_fake_digits, write_fake_fashion, write_fake_ratings

def test_labels_and_splits():
  assert [sentiment_data.binary_label(s) for s in (-2.0, -0.5, 0.0, 0.5, 0.51)] == [0, -1, -1, -1, 1]
  assert [sentiment_data.fine_label(s) for s in (-3.0, -2.0, -0.6, -0.5, 0.5, 0.6, 2.0, 2.1)] == [0, 1, 1, 2, 2, 3, 3, 4]
  splits = [sentiment_data.split_of('tweets', str(i)) for i in range(5000)]
  assert abs(splits.count('test') / 5000 - 0.1) < 0.02 and abs(splits.count('train') / 5000 - 0.8) < 0.02
  assert splits == [sentiment_data.split_of('tweets', str(i)) for i in range(5000)]


@pytest.mark.slow
def test_sentiment_builder_pipeline_and_training(tmp_path):
  ratings = str(tmp_path / 'ratings')
  write_fake_ratings(ratings)
  examples = sentiment_data.read_ratings(ratings)
  assert len(examples) == 240 and {e['domain'] for e in examples} == set(sentiment_data.DOMAINS)
  builder = sentiment_data.build(str(tmp_path / 'data'), ratings)
  sources = builder.as_data_source()
  assert sum(len(s) for s in sources.values()) == 240
  expected = {split: sum(sentiment_data.split_of(e['domain'], e['id']) == split for e in examples)
              for split in ('train', 'validation', 'test')}
  assert {k: len(v) for k, v in sources.items()} == expected
  vocabulary = sentiment_data.WordVocabulary.build([e['text'] for e in examples])
  assert vocabulary.encode('great unknownword') == [vocabulary.index['great'], special_tokens.WORD_UNK_ID]

  # Deterministic shuffling, exact resume, disjoint process shards, neutral sentences left out of 'binary'.
  make = lambda **kw: iter(sentiment_data.batches(sources['train'], vocabulary, label='binary', batch_size=8,
                                                   max_length=10, seed=3, shuffle=True, **kw))
  first, second = make(), make()
  a = [next(first) for _ in range(3)]
  b = [next(second) for _ in range(3)]
  assert all(np.array_equal(x['tokens'], y['tokens']) for x, y in zip(a, b))
  state = first.get_state()
  json.dumps(state)
  after = next(first)
  resumed = make()
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['tokens'], after['tokens'])
  assert set(np.concatenate([x['label'] for x in a]).tolist()) <= {0, 1}
  shard0 = next(iter(sentiment_data.batches(sources['test'], vocabulary, label='fine', batch_size=100, max_length=10,
                                            seed=0, shuffle=False, drop_remainder=False, process_index=0,
                                            process_count=2)))
  shard1 = next(iter(sentiment_data.batches(sources['test'], vocabulary, label='fine', batch_size=100, max_length=10,
                                            seed=0, shuffle=False, drop_remainder=False, process_index=1,
                                            process_count=2)))
  assert len(shard0['label']) + len(shard1['label']) == len(sources['test'])

  config = sentiment.default_config()
  config.data.data_dir = str(tmp_path / 'data')
  config.data.min_count = 1
  config.model.update(embed_dim=8, hidden_dim=8, attention_dim=8, dropout_rate=0.0, scorer='additive',
                      scorer_options={'hidden_dim': 8})
  config.train.update(batch_size=16, num_steps=80, log_every=20, eval_every=80, checkpoint_every=40,
                      learning_rate=1e-2)
  config.eval.num_examples_shown = 3
  workdir = str(tmp_path / 'run')
  results = sentiment.train_and_evaluate(config, workdir)
  assert results['test']['accuracy'] >= 0.8          # the fake sentences are separable by their words
  assert {f'accuracy_{d}' for d in sentiment_data.DOMAINS} <= set(results['test'])
  for name in ('attention.html', 'attention.png', 'metrics.jsonl', 'vocab.json', 'results.json'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert 'great' in open(os.path.join(workdir, 'attention.html')).read() or 'terrible' in open(
      os.path.join(workdir, 'attention.html')).read()


def test_missing_sentiment_data_names_the_prepare_command(tmp_path):
  with pytest.raises(FileNotFoundError, match='python -m experiments.prepare_data --dataset=vader_sentiment'):
    sentiment_data.load(str(tmp_path))


@pytest.mark.slow
def test_digit_strips_builder_splits_by_source_image_and_trains(tmp_path):
  csv = str(tmp_path / 'digits.csv.gz')
  write_fake_digits(csv)
  images, labels = digit_data.read_digits_csv(csv)
  assert images.shape == (120, 8, 8) and images.max() == 1.0 and labels[:3].tolist() == [0, 1, 2]
  pools = digit_data.split_pools(120)
  assert sum(len(p) for p in pools.values()) == 120
  assert not set(pools['train']) & set(pools['test']) and not set(pools['train']) & set(pools['validation'])
  counts = {'train': 200, 'validation': 40, 'test': 40}
  builder = digit_data.build(str(tmp_path / 'data'), csv, counts=counts)     # source='sklearn_digits'
  sources = builder.as_data_source()
  assert {k: len(v) for k, v in sources.items()} == counts
  for split in ('validation', 'test'):
    used = {int(i) for k in range(len(sources[split])) for i in sources[split][k]['source_indices']}
    assert used <= set(pools[split].tolist())        # test strips only contain unseen source images
  example = sources['test'][0]
  digits = example['digits']
  assert 3 <= len(digits) <= 5
  for position, index in enumerate(example['source_indices']):
    np.testing.assert_array_equal(example['image'][:, 8 * position:8 * position + 8, 0], images[index])
  encoded = digit_data.encode_example(example, max_digits=5)
  assert digit_data.decode_digits(encoded['target_out']) == ''.join(str(d) for d in digits)
  assert encoded['spans'][0].tolist() == [0, 8]

  config = digit_strips.default_config()
  config.data.data_dir = str(tmp_path / 'data')
  config.data.num_train, config.data.num_eval = 200, 40
  config.model.update(conv_features=(4, 8), conv_pool=(True, False), embed_dim=4, hidden_dim=16, scorer_options={'hidden_dim': 8})
  config.train.update(batch_size=8, num_steps=10, log_every=5, eval_every=10, checkpoint_every=5,
                      doubly_stochastic=1.0)
  config.eval.update(batch_size=20, num_overlays=2)
  workdir = str(tmp_path / 'run')
  results = digit_strips.train_and_evaluate(config, workdir)
  assert set(results['test']) == {'sequence_accuracy', 'digit_accuracy', 'attention_in_span'}
  assert len(os.listdir(os.path.join(workdir, 'overlays'))) == 2


def test_fashion_strips_use_only_official_test_images_in_test(tmp_path):
  directory = tmp_path / 'fashion'
  write_fake_fashion(directory)
  images, labels, pools = digit_data.read_fashion_mnist(str(directory))
  assert images.shape == (70, 28, 28) and images.max() == 1.0 and labels[50:53].tolist() == [0, 1, 2]
  assert pools['train'].tolist() == list(range(45)) and pools['validation'].tolist() == list(range(45, 50))
  assert pools['test'].tolist() == list(range(50, 70))                     # the official test set only
  counts = {'train': 64, 'validation': 16, 'test': 16}
  builder = digit_data.build(str(tmp_path / 'data'), str(directory), source='fashion_mnist', counts=counts)
  test = builder.as_data_source()['test']
  example = test[0]
  assert example['image'].shape == (28, 140, 1)
  assert {int(i) for k in range(len(test)) for i in test[k]['source_indices']} <= set(range(50, 70))
  for position, index in enumerate(example['source_indices']):
    np.testing.assert_allclose(example['image'][:, 28 * position:28 * position + 28, 0], images[index])
  encoded = digit_data.encode_example(example, max_digits=5)
  assert encoded['spans'][:2].tolist() == [[0, 28], [28, 56]]
  assert [digit_data.CLASS_NAMES['fashion_mnist'][int(d)] for d in digit_data.decode_digits(encoded['target_out'])] \
      == [digit_data.CLASS_NAMES['fashion_mnist'][d] for d in example['digits']]
  with pytest.raises(ValueError, match='Valid sources: sklearn_digits, fashion_mnist'):
    digit_data.load(str(tmp_path), source='mnist')
  with pytest.raises(FileNotFoundError, match='--dataset=fashion_strips'):
    digit_data.load(str(tmp_path / 'empty'), source='fashion_mnist')
  (directory / 'bad.gz').write_bytes(gzip.compress(b'\x00\x00\x0d\x01' + (3).to_bytes(4, 'big')))
  with pytest.raises(ValueError, match='not an unsigned-byte IDX file'):
    digit_data.read_idx(str(directory / 'bad.gz'))


@pytest.mark.slow
def test_fashion_strips_config_trains(tmp_path):
  directory = tmp_path / 'fashion'
  write_fake_fashion(directory)
  digit_data.build(str(tmp_path / 'data'), str(directory), source='fashion_mnist',
                   counts={'train': 64, 'validation': 16, 'test': 16})
  from configs import fashion_strips
  config = fashion_strips.get_config()
  config.data.data_dir = str(tmp_path / 'data')
  config.data.num_train, config.data.num_eval = 64, 16
  config.model.update(conv_features=(4, 4, 8, 8), embed_dim=4, hidden_dim=8, scorer_options={'hidden_dim': 4})
  config.train.update(batch_size=8, num_steps=2, log_every=1, eval_every=2, checkpoint_every=2)
  config.eval.update(batch_size=16, num_overlays=1)
  results = digit_strips.train_and_evaluate(config, str(tmp_path / 'run'))
  assert 0.0 <= results['test']['sequence_accuracy'] <= 1.0
  assert len(os.listdir(tmp_path / 'run' / 'overlays')) == 1


def test_span_hits_by_hand():
  weights = np.zeros((1, 2, 2 * 5))                # grid 2 x 5 over a 40-pixel-wide image: 8 pixels per cell
  weights[0, 0, 1] = 1.0                           # step 0 peaks in column 1 (pixels 8-15)
  weights[0, 1, 5 + 4] = 1.0                       # step 1 peaks in column 4 (pixels 32-39)
  spans = np.array([[[8, 16], [8, 16]]])
  assert digit_strips.span_hits(weights, spans, (2, 5), 40) == (1, 2)
