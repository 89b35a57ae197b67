"""Every dataset of the project by name: what it is for, how it is prepared and, for translation, how it is loaded.

    spec = registry.get('bible_en_es')       # unknown name: ValueError listing the valid ones
    spec.prepare('data')                     # what `python -m experiments.prepare_data --dataset=bible_en_es` runs
    task = attention_jax.data.make_task(config.data)   # looks up registry.get(name, kind='translation').load

DATASETS holds the fixed names; any 'tfds:<catalog name>' is a translation dataset too (the tfds catalog is
open-ended), its spec made when it is looked up. Dataset names are checked here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from attention_jax.data import bible
from attention_jax.data import canvases
from attention_jax.data import digit_strips
from attention_jax.data import messages
from attention_jax.data import ner
from attention_jax.data import sentiment
from attention_jax.data import speech
from attention_jax.data import summaries
from attention_jax.data import synthetic
from attention_jax.data import translation_datasets

KINDS = ('translation', 'sentiment', 'image_to_sequence', 'image_classification', 'tagging', 'speech')
TFDS_PREFIX = 'tfds:'            # 'tfds:ted_hrlr_translate/pt_to_en': any tfds catalog translation dataset
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset={name}'


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One dataset.

  Attributes:
    name: the dataset's name (config.data.name, prepare_data --dataset).
    kind: what it is for: 'translation' | 'sentiment' | 'image_to_sequence' | 'image_classification' | 'tagging' |
      'speech'.
    prepare: prepare(data_dir, **options) -> its built tfds builder; what prepare_data runs.
    prepare_command: the command that prepares it (named by the errors of an unprepared dataset).
    needs: what preparing it needs.
    data_dir: where prepare_data builds it when --data_dir is not given.
    prepare_options: the keyword options of prepare beyond data_dir (prepare_data flags of the same names).
    tokenizer: translation: the default tokenizer, 'char' | 'sentencepiece'.
    max_lengths: translation: default (S, T), EOS included; None = 2 * config.max_length + 1 each (room for
      the synthetic split test_long).
    alignment_unit: translation: what the gold links index, 'char' | 'word'; None = no gold alignments.
    truncate_sources: translation: sources longer than S are cut instead of left out (summaries).
    bucket_boundaries: translation: the default source-length bucket boundaries (EOS included) of its batches
      (attention_jax.data.batching); () = every batch padded to (S, T), as the synthetic tasks.
    load: translation: load(spec, data_config, data_dir, tokenizer) -> TranslationTask.
  """

  name: str
  kind: str
  prepare: Callable[..., Any]
  prepare_command: str
  needs: str
  data_dir: str = 'data'
  prepare_options: tuple[str, ...] = ()
  tokenizer: str | None = None
  max_lengths: tuple[int, int] | None = None
  alignment_unit: str | None = None
  truncate_sources: bool = False
  bucket_boundaries: tuple[int, ...] = ()
  load: Callable[..., Any] | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'Unknown dataset kind {self.kind!r} of {self.name!r}. Valid kinds: {", ".join(KINDS)}.')
    if (self.kind == 'translation') != (self.load is not None and self.tokenizer is not None):
      raise ValueError(f'{self.name!r}: translation datasets, and only they, have a loader and a default tokenizer.')


def _synthetic(task: str, max_lengths: tuple[int, int] | None = None) -> DatasetSpec:
  return DatasetSpec(task, 'translation', functools.partial(synthetic.prepare, task), PREPARE_COMMAND.format(name=task),
                     needs='nothing: built on first use', tokenizer='char', max_lengths=max_lengths,
                     alignment_unit='char', load=translation_datasets.load_synthetic)


def _messages(language: str) -> DatasetSpec:
  return DatasetSpec(f'messages_en_{language}', 'translation', functools.partial(messages.prepare, language),
                     messages.PREPARE_COMMAND.format(language=language), needs='apt-get download (Debian), ~15 s',
                     tokenizer='sentencepiece', max_lengths=(40, 48), bucket_boundaries=(6, 8, 12, 16, 24),
                     load=functools.partial(translation_datasets.load_corpus,
                                            functools.partial(messages.builder, language)))


def _tfds_catalog(name: str) -> DatasetSpec:
  catalog_name = name[len(TFDS_PREFIX):]
  return DatasetSpec(name, 'translation', functools.partial(translation_datasets.prepare_tfds_catalog, catalog_name),
                     PREPARE_COMMAND.format(name=name), needs='the internet (tfds downloads it)',
                     tokenizer='sentencepiece', max_lengths=(64, 72), bucket_boundaries=(16, 24, 32, 48),
                     load=functools.partial(translation_datasets.load_tfds_catalog, catalog_name))


def _is_tfds_name(name) -> bool:
  return isinstance(name, str) and name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)


class _Datasets(dict):
  """name -> DatasetSpec; `in` and `[]` also take any 'tfds:<catalog name>', whose spec is made on lookup."""

  def __contains__(self, name) -> bool:
    return _is_tfds_name(name) or (isinstance(name, str) and dict.__contains__(self, name))

  def __missing__(self, name):
    if _is_tfds_name(name):
      return _tfds_catalog(name)
    raise KeyError(name)


DATASETS = _Datasets({spec.name: spec for spec in (
    DatasetSpec('vader_sentiment', 'sentiment', sentiment.prepare, sentiment.PREPARE_COMMAND,
                needs='pip download (PyPI)', data_dir='data/vader_sentiment'),
    DatasetSpec('digit_strips', 'image_to_sequence', digit_strips.prepare,
                digit_strips.PREPARE_COMMANDS['sklearn_digits'],
                needs="scikit-learn's digits: an installed scikit-learn, or its wheel (pip download, PyPI)",
                data_dir='data/digit_strips'),
    DatasetSpec('fashion_strips', 'image_to_sequence', functools.partial(digit_strips.prepare, source='fashion_mnist'),
                digit_strips.PREPARE_COMMANDS['fashion_mnist'], needs='apt-get download (Debian), ~1 min',
                data_dir='data/fashion_strips'),
    *(DatasetSpec(variant, 'image_classification', functools.partial(canvases.prepare, variant=variant),
                  canvases.PREPARE_COMMAND.format(name=variant), needs='apt-get download (Debian), ~2 min',
                  data_dir=f'data/{variant}') for variant in canvases.VARIANTS),
    DatasetSpec('conll2003', 'tagging', ner.prepare, ner.PREPARE_COMMAND,
                needs='the tfds catalog (the internet and TensorFlow), or local CoNLL-2003 files (--source_file=DIR)',
                data_dir='data/conll2003', prepare_options=('source_file',)),
    DatasetSpec('espeak_speech', 'speech', speech.prepare, speech.PREPARE_COMMAND,
                needs='espeak-ng (apt-get install espeak-ng) and the prepared bible_en_es; ~2 min',
                data_dir='data/espeak_speech'),
    _synthetic('copy'), _synthetic('reverse'), _synthetic('sort'),
    _synthetic('date', max_lengths=(32, 11)),     # longest source ~28 characters; 'yyyy-mm-dd' + EOS
    *(_messages(language) for language in messages.LANGUAGES),
    DatasetSpec('bible_en_es', 'translation', bible.prepare, bible.PREPARE_COMMAND,
                needs='apt-get download (Debian), ~2-3 min', tokenizer='sentencepiece', max_lengths=(96, 112),
                bucket_boundaries=(24, 32, 40, 48, 64),
                alignment_unit='word', load=functools.partial(translation_datasets.load_corpus, bible.builder)),
    # Long description -> synopsis: the translation model reused for summarisation.
    DatasetSpec('debian_summaries', 'translation', summaries.prepare, summaries.PREPARE_COMMAND,
                needs='apt-get update (Debian) or a download from deb.debian.org, or a local copy (--source_file)',
                prepare_options=('source_file',), tokenizer='sentencepiece', max_lengths=(128, 24),
                truncate_sources=True, bucket_boundaries=(32, 48, 64, 96),
                load=functools.partial(translation_datasets.load_corpus, summaries.builder,
                                       keys=('document', 'summary'))),
)})


def names(kind: str | None = None) -> list[str]:
  """The valid dataset names (of one kind, when given), ending with the 'tfds:<tfds catalog name>' pattern."""
  if kind is not None and kind not in KINDS:
    raise ValueError(f'Unknown dataset kind {kind!r}. Valid kinds: {", ".join(KINDS)}.')
  valid = [name for name, spec in DATASETS.items() if kind in (None, spec.kind)]
  tfds_pattern = [f'{TFDS_PREFIX}<tfds catalog name>'] if kind in (None, 'translation') else []
  return valid + tfds_pattern


def get(name: str, kind: str | None = None) -> DatasetSpec:
  """The spec of dataset `name`, which must be of `kind` when that is given.

  Raises:
    ValueError: an unknown name, or one of another kind; the message lists the valid names.
  """
  valid = names(kind)
  if name in DATASETS and kind in (None, DATASETS[name].kind):
    return DATASETS[name]
  raise ValueError(f'Unknown dataset {name!r}. Valid datasets: {", ".join(valid)}.')
