"""Data config names, tokenizers (save/load, SentencePiece determinism), the public API and the tfds catalog path."""

import json
import os
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from attention_jax import data
from attention_jax.data import config as data_config
from attention_jax.data import alignments
from attention_jax.data import tokenizers
from attention_jax.data import translation
from attention_jax.data import translation_task


def test_default_config_names_and_errors():
  for name in ('copy', 'reverse', 'sort', 'date', 'bible_en_es', 'messages_en_fr', 'messages_en_de',
               'messages_en_es', 'debian_summaries', 'tfds:ted_hrlr_translate/pt_to_en'):
    config = data.default_data_config(name)
    assert config.name == name and name in data.DATASETS
    assert config.tokenizer == ('char' if name in ('copy', 'reverse', 'sort', 'date') else 'sentencepiece')
  with pytest.raises(ValueError, match=r'Valid datasets: copy, reverse, sort, date, messages_en_fr, messages_en_de, '
                                       r'messages_en_es, bible_en_es, debian_summaries, tfds:<tfds catalog name>'):
    data.default_data_config('wmt')
  assert 'tfds:' not in data.DATASETS and 'bible' not in data.DATASETS
  config = data.default_data_config('date')
  config.tokenizer = 'bpe'
  with pytest.raises(ValueError, match='Valid tokenizers: char, sentencepiece'):
    data.make_task(config)


def test_public_api_reexports_one_implementation():
  assert data.TranslationTask is translation_task.TranslationTask and data.make_task is translation.make_task
  assert (data.PAD_ID, data.BOS_ID, data.EOS_ID, data.UNK_ID) == (0, 1, 2, 3)
  assert tokenizers.load_tokenizers is data.load_tokenizers
  assert data.default_data_config is data_config.default_data_config


def test_tokenizers_save_and_load_with_the_run(tmp_path):
  config = data.default_data_config('date')
  config.num_train, config.num_eval = 200, 20
  task = data.make_task(config, data_dir=str(tmp_path / 'data'))
  assert task.name == 'date'
  path = task.save_tokenizers(str(tmp_path / 'run'))
  assert os.path.basename(path) == 'vocab.json' and json.load(open(path))['source']['type'] == 'char'
  source, target, max_source, max_target = data.load_tokenizers(str(tmp_path / 'run'))
  text = task.examples('test')[0][0]
  assert (source.encode(text) == task.source_tokenizer.encode(text)
          and target.vocab_size == task.target_tokenizer.vocab_size)
  assert (max_source, max_target) == (task.max_source_length, task.max_target_length) == (32, 11)
  with pytest.raises(FileNotFoundError, match='No vocab.json'):
    data.load_tokenizers(str(tmp_path))


def test_char_offsets_are_utf8_byte_spans():
  vocab = tokenizers.CharTokenizer('añb')
  assert vocab.encode_with_offsets('añb') == ([4, 5, 6], [(0, 1), (1, 3), (3, 4)])


def test_sentencepiece_is_deterministic_cached_and_keeps_synthetic_alignments(tmp_path):
  config = data.default_data_config('copy')
  config.num_train, config.num_eval, config.max_length = 300, 20, 6
  config.tokenizer, config.vocab_size = 'sentencepiece', 24
  config.max_source_length = config.max_target_length = 16
  first = data.make_task(config, data_dir=str(tmp_path / 'a'))
  second = data.make_task(config, data_dir=str(tmp_path / 'b'))            # trained again from scratch
  assert first.source_tokenizer.to_json() == second.source_tokenizer.to_json()
  cached = [f for f in os.listdir(first._source('train').dataset_info.data_dir) if f.startswith('sentencepiece')]
  assert cached == ['sentencepiece_24.model']
  batch = first.eval_batches('test', batch_size=4)[0]
  for i in range(4):
    source, target = first.examples('test')[i]
    assert first.target_tokenizer.decode(batch['target_out'][i]) == target == source
    ids, spans = first.source_tokenizer.encode_with_offsets(source)
    members = alignments.token_unit_membership(source, spans, 'char')
    # copy: target char j <-> source char j, so token t <-> token s iff they share a character.
    for t in range(len(spans)):
      for s in range(len(spans)):
        assert batch['alignment'][i, t, s] == float((members[t] & members[s]).any()), (source, t, s)
    assert batch['alignment'][i, len(ids):].sum() == 0 and batch['alignment'][i, :, len(ids):].sum() == 0


def test_tfds_catalog_dataset_offline_with_mock_data(tmp_path):
  config = data.default_data_config('tfds:ted_hrlr_translate/pt_to_en')
  config.vocab_size, config.max_source_length, config.max_target_length = 40, 64, 64
  config.bucket_boundaries = ()     # fixed (S, T) batches: this test is about loading, not batching
  with pytest.raises(FileNotFoundError,
                     match='python -m experiments.prepare_data --dataset=tfds:ted_hrlr_translate/pt_to_en'):
    data.make_task(config, data_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    task = data.make_task(config, data_dir=str(tmp_path))
    assert task.splits == ('train', 'validation', 'test') and not task.has_alignments
    records = task._source('train')
    source, target = task.examples('train')[0]
    assert (source, target) == (records[0]['pt'], records[0]['en'])       # supervised keys (pt, en)
    batch = next(task.train_iterator(batch_size=4, seed=0))
    assert batch['source'].shape == (4, 64) and set(np.unique(batch['target_out'][:, 0])) - {0} != set()
    assert len(task.eval_batches("test", batch_size=8)) == 3
  assert os.listdir(tmp_path / "tfds" / "tokenizers" / "ted_hrlr_translate" / "pt_to_en" / "1.0.0") == [
      "sentencepiece_40.model"]
  config.name = 'tfds:no_such_dataset_xyz'
  with pytest.raises(ValueError, match='not in the tfds catalog'):
    data.make_task(config, data_dir=str(tmp_path))
