"""Loaders: a translation dataset's spec (attention_jax.data.registry) + a data config -> a TranslationTask.

Three ways to get the records, one way to make the task from them:
  load_synthetic      the synthetic tasks, built on first use (attention_jax.data.synthetic)
  load_corpus         a corpus that prepare_data built (Bible, message catalogs, package descriptions)
  load_tfds_catalog   any tfds catalog translation dataset with (source, target) supervised keys
Each trains (or reads from its cache) one tokenizer shared by source and target on the training split. Only
synthetic tasks build their data here; a corpus that is not prepared stops with the command that prepares it.
This module never imports models or jax.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import tensorflow_datasets as tfds

from attention_jax.data import synthetic
from attention_jax.data.tokenizers import CharTokenizer, train_tokenizer
from attention_jax.data.translation_task import TranslationTask, record_text

if TYPE_CHECKING:
  from attention_jax.data.registry import DatasetSpec    # the registry imports this module

SOURCE_TARGET = ('source', 'target')


def load_synthetic(spec: DatasetSpec, data_config, data_dir: str, tokenizer: str) -> TranslationTask:
  """A synthetic task (built on first use, seconds) with characters from its alphabet or a SentencePiece model."""
  builder = synthetic.prepare(spec.name, data_dir, **{key: data_config[key] for key in synthetic.DEFAULT_OPTIONS})
  sources = builder.as_data_source()
  if tokenizer == 'char':
    vocab = CharTokenizer(synthetic.alphabet(spec.name, int(data_config.alphabet_size)))
  else:
    vocab = _train(tokenizer, sources['train'], SOURCE_TARGET, int(data_config.vocab_size), builder.data_dir, 0)
  return _task(spec, data_config, sources, vocab, SOURCE_TARGET, 0)


def load_corpus(builder, spec: DatasetSpec, data_config, data_dir: str, tokenizer: str, *,
                keys: tuple[str, str] = SOURCE_TARGET) -> TranslationTask:
  """A prepared corpus; `builder(data_dir)` is its (possibly not yet built) tfds builder, `keys` its text features."""
  built = builder(data_dir)
  require_prepared(built, spec, data_dir)
  return _corpus_task(spec, data_config, built.as_data_source(), built.data_dir, tokenizer, keys)


def load_tfds_catalog(catalog_name: str, spec: DatasetSpec, data_config, data_dir: str,
                      tokenizer: str) -> TranslationTask:
  """A prepared tfds catalog dataset ('ted_hrlr_translate/pt_to_en' etc.), read as array_record."""
  try:
    builder = tfds_catalog_builder(catalog_name, data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(f'{catalog_name!r} is not in the tfds catalog: {error}') from None
  require_prepared(builder, spec, data_dir)
  keys = builder.info.supervised_keys
  if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
    raise ValueError(f'tfds dataset {catalog_name!r} has no (source, target) supervised keys: {keys!r}.')
  splits = tuple(builder.info.splits) or ('train', 'validation', 'test')
  sources = {split: builder.as_data_source(split=split) for split in splits}
  if 'train' not in sources:
    raise ValueError(f'tfds dataset {catalog_name!r} has no train split (splits: {", ".join(splits)}).')
  # The tokenizer cache is ours, beside (not inside) tfds's own directory of the dataset.
  cache_dir = os.path.join(data_dir, 'tfds', 'tokenizers', catalog_name, str(builder.version))
  return _corpus_task(spec, data_config, sources, cache_dir, tokenizer, keys)


def tfds_catalog_builder(catalog_name: str, data_dir: str):
  """The tfds catalog builder for 'ted_hrlr_translate/pt_to_en' etc., writing array_record under data_dir/tfds."""
  return tfds.builder(catalog_name, data_dir=os.path.join(data_dir, 'tfds'), file_format='array_record')


def prepare_tfds_catalog(catalog_name: str, data_dir: str):
  """Downloads and builds a tfds catalog dataset as array_record (needs the internet; prepare_data runs it)."""
  builder = tfds_catalog_builder(catalog_name, data_dir)
  builder.download_and_prepare()
  return builder


def require_prepared(builder, spec: DatasetSpec, data_dir: str) -> None:
  """Raises FileNotFoundError naming the command that prepares the dataset when it is not built in data_dir."""
  if not builder.is_prepared():
    raise FileNotFoundError(f'The {spec.name} dataset is not prepared in {data_dir}. Run: '
                            f'{spec.prepare_command} --data_dir={data_dir}')


def _corpus_task(spec: DatasetSpec, data_config, sources: dict, cache_dir: str, tokenizer: str,
                 keys: tuple[str, str]) -> TranslationTask:
  max_train = int(data_config.get('max_train_examples', 0) or 0)
  vocab = _train(tokenizer, sources['train'], keys, int(data_config.vocab_size), cache_dir, max_train)
  return _task(spec, data_config, sources, vocab, keys, max_train)


def _train(tokenizer: str, train, keys: tuple[str, str], vocab_size: int, cache_dir: str, max_train_examples: int):
  """The tokenizer learnt from the first max_train_examples (0 = all) training records, source and target texts."""
  count = min(len(train), max_train_examples) if max_train_examples else len(train)

  def texts():
    for i in range(count):
      record = train[i]
      yield record_text(record[keys[0]])
      yield record_text(record[keys[1]])

  return train_tokenizer(tokenizer, texts(), vocab_size=vocab_size, cache_dir=cache_dir,
                         cache_tag=f'_first{count}' if max_train_examples else '')


def _task(spec: DatasetSpec, data_config, sources: dict, vocab, keys: tuple[str, str],
          max_train_examples: int) -> TranslationTask:
  """The task with the spec's default lengths S, T unless the config sets them (max_*_length > 0)."""
  # No default in the spec (copy/reverse/sort): room for the split test_long, inputs up to 2 * max_length.
  default_s, default_t = spec.max_lengths or (2 * int(data_config.max_length) + 1,) * 2
  return TranslationTask(spec.name, sources, vocab, vocab, int(data_config.max_source_length) or default_s,
                         int(data_config.max_target_length) or default_t,
                         has_alignments=spec.alignment_unit is not None, alignment_unit=spec.alignment_unit or 'char',
                         keys=keys, max_train_examples=max_train_examples, truncate_sources=spec.truncate_sources,
                         bucket_boundaries=tuple(data_config.get('bucket_boundaries', ())))
