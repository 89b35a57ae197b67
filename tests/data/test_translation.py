"""Synthetic tasks and the translation pipeline: gold alignments, determinism, resume, sharding, padding."""

import json

import numpy as np
import pytest

from attention_jax import data
from attention_jax import special_tokens
from attention_jax.data import synthetic
from attention_jax.data import tokenizers
from attention_jax.data import translation


@pytest.mark.parametrize('task', ['copy', 'reverse', 'sort'])
def test_string_task_alignments_link_equal_characters(task):
  for example in synthetic.generate(task, 'train', 50, seed=1, min_length=3, max_length=9):
    source, target, links = example['source'], example['target'], example['alignment']
    assert len(links) == len(target) == len(source)
    assert sorted(links[:, 0].tolist()) == list(range(len(target)))          # every output character, once
    assert sorted(links[:, 1].tolist()) == list(range(len(source)))          # a permutation of the source
    assert all(target[t] == source[s] for t, s in links)


def test_date_alignments_point_at_the_source_digits_and_month_names():
  for example in synthetic.generate('date', 'test', 300, seed=0):
    source, target, links = example['source'], example['target'], example['alignment']
    assert len(target) == 10 and target[4] == target[7] == '-'
    for t, s in links:
      assert t not in (4, 7)                                   # separators align to nothing
      if source[s].isdigit():
        assert source[s] == target[t]                           # digits copy digits
      else:
        assert source[s].isalpha()                              # or come from the month's name


def test_generation_is_deterministic_and_split_streams_differ():
  a = [e['source'] for e in synthetic.generate('date', 'train', 20, seed=3)]
  assert a == [e['source'] for e in synthetic.generate('date', 'train', 20, seed=3)]
  assert a != [e['source'] for e in synthetic.generate('date', 'test', 20, seed=3)]
  long = list(synthetic.generate('reverse', 'test_long', 20, min_length=3, max_length=6))
  assert all(7 <= len(e['source']) <= 12 for e in long)
  with pytest.raises(ValueError, match='Valid tasks: copy, reverse, sort, date'):
    list(synthetic.generate('shuffle', 'train', 1))
  with pytest.raises(ValueError, match="no split 'test_long'"):
    list(synthetic.generate('date', 'test_long', 1))


@pytest.fixture(scope='module')
def task(tmp_path_factory):
  config = data.default_data_config('reverse')
  config.data_dir = str(tmp_path_factory.mktemp('data'))
  config.num_train, config.num_eval, config.max_length = 300, 50, 6
  return translation.make_task(config)


def test_builder_counts_and_batches(task):
  assert task.splits == ('train', 'validation', 'test', 'test_long')
  assert len(task.kept_indices('train')) == 300 and len(task.kept_indices('test_long')) == 50
  batch = next(task.train_iterator(batch_size=8, seed=0))
  S, T = task.max_source_length, task.max_target_length
  assert {k: v.shape for k, v in batch.items()} == {'source': (8, S), 'target_in': (8, T), 'target_out': (8, T),
                                                    'alignment': (8, T, S)}
  for i in range(8):
    source = task.source_tokenizer.decode(batch['source'][i])
    target = task.target_tokenizer.decode(batch['target_out'][i])
    assert target == source[::-1]
    n = len(source)
    assert batch['source'][i, n] == special_tokens.EOS_ID and batch['target_out'][i, n] == special_tokens.EOS_ID
    assert batch['target_in'][i, 0] == special_tokens.BOS_ID
    np.testing.assert_array_equal(batch['target_in'][i, 1:n + 1], batch['target_out'][i, :n])
    np.testing.assert_array_equal(batch['alignment'][i, :n, :n], np.fliplr(np.eye(n)))
    assert batch['alignment'][i, n:].sum() == 0                # EOS and padding rows have no gold links


def test_shuffle_is_seeded_and_resume_is_exact(task):
  first = task.train_iterator(batch_size=8, seed=5)
  same = task.train_iterator(batch_size=8, seed=5)
  other = task.train_iterator(batch_size=8, seed=6)
  a, b, c = next(first), next(same), next(other)
  np.testing.assert_array_equal(a['source'], b['source'])
  assert not np.array_equal(a['source'], c['source'])
  for _ in range(40):                                          # past an epoch boundary (300 / 8)
    next(first)
  state = json.loads(json.dumps(first.get_state()))
  expected = [next(first)['source'] for _ in range(3)]
  resumed = task.train_iterator(batch_size=8, seed=5)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)['source'], want)


def test_process_shards_are_disjoint_and_cover_the_data(task):
  examples = [src for src, _ in task.examples('train')]
  for p in range(2):
    iterator = task.train_iterator(batch_size=10, seed=0, process_index=p, process_count=2)
    read = sorted(task.source_tokenizer.decode(r) for _ in range(15) for r in next(iterator)['source'])  # one epoch
    assert read == sorted(examples[p::2])          # exactly this process's records, each once per epoch


def test_eval_batches_pad_the_last_batch_with_empty_examples(task):
  batches = task.eval_batches('test', batch_size=16)
  assert len(batches) == 4 and all(b['source'].shape[0] == 16 for b in batches)
  last = batches[-1]
  assert (last['target_out'][2:] == 0).all() and (last['target_out'][:2] != 0).any()   # 50 = 3 * 16 + 2
  refs = [t for _, t in task.examples('test')]
  assert [task.target_tokenizer.decode(r) for r in batches[0]['target_out']] == refs[:16]


def test_char_vocabulary_round_trip_and_tokens():
  vocab = tokenizers.CharTokenizer('abc -')
  ids = vocab.encode('ab-z')
  assert ids == [4, 5, 8, special_tokens.UNK_ID]
  assert vocab.decode(ids + [special_tokens.EOS_ID, 5]) == 'ab-?'
  assert vocab.tokens([4, 2, 0]) == ['a', '</s>']
  assert tokenizers.tokenizer_from_json(vocab.to_json()).encode('cab') == vocab.encode('cab')


def test_generating_a_synthetic_task_says_so_and_does_not_claim_a_download(tmp_path, capfd):
  synthetic.prepare('copy', str(tmp_path), num_train=20, num_eval=5, max_length=4)
  printed = ''.join(capfd.readouterr())
  assert 'Generating the synthetic copy task (20 training examples)' in printed
  assert 'Downloading' not in printed and 'dataset_info' not in printed
  synthetic.prepare('copy', str(tmp_path), num_train=20, num_eval=5, max_length=4)   # prepared: silent
  assert ''.join(capfd.readouterr()) == ''
