"""The data fields of a translation config (`config.data`), with the defaults of each dataset."""

from __future__ import annotations

import ml_collections

from attention_jax.data import registry
from attention_jax.data import synthetic


def default_data_config(name: str = 'date') -> ml_collections.ConfigDict:
  """Every field the data layer reads, with defaults for translation dataset `name`.

  Raises:
    ValueError: unknown dataset name (the message lists the valid ones).
  """
  spec = registry.get(name, kind='translation')
  generation = synthetic.DEFAULT_OPTIONS
  config = ml_collections.ConfigDict()
  config.name = name                  # copy | reverse | sort | date | bible_en_es | messages_en_{fr,de,es} |
                                      # debian_summaries | tfds:<name>
  config.data_dir = 'data'            # built datasets, downloads and tokenizer models are cached under it
  config.tokenizer = spec.tokenizer   # char | sentencepiece (trained on the training split, cached)
  config.vocab_size = 4000            # sentencepiece: pieces, shared by source and target (ids 0-3 are special)
  config.max_source_length = 0        # S incl. EOS; 0 = the dataset's default; longer examples are left out
                                      # (debian_summaries: longer documents are cut to their first S - 1 tokens)
  config.max_target_length = 0        # T incl. EOS; 0 = the dataset's default; longer examples are left out
  config.bucket_boundaries = spec.bucket_boundaries   # source lengths (incl. EOS) of the length buckets batches
                                      # are padded to (targets in proportion, see data/batching.py); () = (S, T)
  config.num_train = generation['num_train']          # synthetic tasks: training examples
  config.num_eval = generation['num_eval']            # synthetic tasks: validation / test / test_long examples each
  config.min_length = generation['min_length']        # copy/reverse/sort: shortest input
  config.max_length = generation['max_length']        # copy/reverse/sort: longest training input (test_long: 2x)
  config.alphabet_size = generation['alphabet_size']  # copy/reverse/sort: letters used
  config.seed = generation['seed']    # synthetic generation seed (the data itself, not the training order)
  config.max_train_examples = 0       # real corpora: use only the first N training pairs (0 = all)
  return config
