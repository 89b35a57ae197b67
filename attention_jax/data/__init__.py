"""Datasets and host-side input pipelines (numpy, grain, tensorflow-datasets; never jax).

    from attention_jax import data
    task = data.make_task(data.default_data_config('date'))
    batches = task.train_iterator(batch_size=64, seed=0)

Modules: registry (every dataset by name), config (config.data defaults), translation (make_task),
translation_task (TranslationTask and its batches), translation_datasets (the translation loaders), alignments
(gold links onto tokens), tokenizers; one module per dataset source: synthetic, bible, messages, summaries,
sentiment, digit_strips (with debian and splits, shared by them).
"""

from attention_jax.data import registry
from attention_jax.data.config import default_data_config
from attention_jax.data.registry import DATASETS, DatasetSpec
from attention_jax.data.tokenizers import (CharTokenizer, SentencePieceTokenizer, load_tokenizers, save_tokenizers,
                                           tokenizer_from_json)
from attention_jax.data.translation import make_task
from attention_jax.data.translation_task import TranslationTask
# Defined in attention_jax.special_tokens (import them from there); kept here only for the assertion of
# tests/data/test_config_tokenizers.py::test_public_api_reexports_one_implementation.
from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID

__all__ = [
    'BOS_ID', 'DATASETS', 'EOS_ID', 'PAD_ID', 'UNK_ID', 'CharTokenizer', 'DatasetSpec', 'SentencePieceTokenizer',
    'TranslationTask', 'default_data_config', 'load_tokenizers', 'make_task', 'registry', 'save_tokenizers',
    'tokenizer_from_json',
]
