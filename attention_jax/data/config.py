"""The data fields of a translation config (`config.data`) and the dataset names they accept."""

from __future__ import annotations

import ml_collections

from attention_jax.data import synthetic

MESSAGE_LANGUAGES = ('fr', 'de', 'es')
MESSAGE_DATASETS = tuple(f'messages_en_{language}' for language in MESSAGE_LANGUAGES)
BIBLE_DATASETS = ('bible_en_es',)
SUMMARY_DATASETS = ('debian_summaries',)   # long description -> synopsis (the translation model reused)
TFDS_PREFIX = 'tfds:'            # 'tfds:ted_hrlr_translate/pt_to_en': any tfds catalog translation dataset
CORPUS_DATASETS = MESSAGE_DATASETS + BIBLE_DATASETS + SUMMARY_DATASETS


class _DatasetNames(tuple):
  """The fixed dataset names; `in` also accepts any 'tfds:<catalog name>' (the catalog is open-ended)."""

  def __contains__(self, name) -> bool:
    return isinstance(name, str) and (tuple.__contains__(self, name) or _is_tfds_name(name))


DATASETS = _DatasetNames(synthetic.TASKS + CORPUS_DATASETS)
VALID_NAMES_TEXT = ', '.join(DATASETS) + f', {TFDS_PREFIX}<tfds catalog name>'
TOKENIZER_KINDS = ('char', 'sentencepiece')


def _is_tfds_name(name: str) -> bool:
  return name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)


def check_dataset_name(name: str) -> None:
  """Raises ValueError naming every valid dataset when `name` is not one of them."""
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}. Valid datasets: {VALID_NAMES_TEXT}.')


def default_tokenizer(name: str) -> str:
  """Characters for the synthetic tasks, SentencePiece for real corpora."""
  return 'char' if name in synthetic.TASKS else 'sentencepiece'


def default_data_config(name: str = 'date') -> ml_collections.ConfigDict:
  """Every field the data layer reads, with defaults for dataset `name`.

  Raises:
    ValueError: unknown dataset name (the message lists the valid ones).
  """
  check_dataset_name(name)
  config = ml_collections.ConfigDict()
  config.name = name                  # copy | reverse | sort | date | bible_en_es | messages_en_{fr,de,es} |
                                      # debian_summaries | tfds:<name>
  config.data_dir = 'data'            # built datasets, downloads and tokenizer models are cached under it
  config.tokenizer = default_tokenizer(name)   # char | sentencepiece (trained on the training split, cached)
  config.vocab_size = 4000            # sentencepiece: pieces, shared by source and target (ids 0-3 are special)
  config.max_source_length = 0        # S incl. EOS; 0 = the dataset's default; longer examples are left out
                                      # (debian_summaries: longer documents are cut to their first S - 1 tokens)
  config.max_target_length = 0        # T incl. EOS; 0 = the dataset's default; longer examples are left out
  config.num_train = 20000            # synthetic tasks: training examples
  config.num_eval = 1000              # synthetic tasks: validation / test / test_long examples each
  config.min_length = 3               # copy/reverse/sort: shortest input
  config.max_length = 10              # copy/reverse/sort: longest training input (split test_long goes to 2x)
  config.alphabet_size = 10           # copy/reverse/sort: letters used
  config.seed = 0                     # synthetic generation seed (the data itself, not the training order)
  config.max_train_examples = 0       # real corpora: use only the first N training pairs (0 = all)
  return config
