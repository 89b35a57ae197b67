"""Datasets and host-side input pipelines (numpy, grain, tensorflow-datasets; never jax).

    from attention_jax import data
    task = data.make_task(data.default_data_config('date'))
    batches = task.train_iterator(batch_size=64, seed=0)
"""

from attention_jax.data.config import DATASETS, check_dataset_name, default_data_config
from attention_jax.data.tokenizers import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer, CharVocabulary,
                                           SentencePieceTokenizer, SentencePieceVocabulary, load_tokenizers,
                                           save_tokenizers, tokenizer_from_json)
from attention_jax.data.translation import Task, TranslationTask, make_task

__all__ = [
    'BOS_ID', 'DATASETS', 'EOS_ID', 'PAD_ID', 'UNK_ID', 'CharTokenizer', 'CharVocabulary', 'SentencePieceTokenizer',
    'SentencePieceVocabulary', 'Task', 'TranslationTask', 'check_dataset_name', 'default_data_config',
    'load_tokenizers', 'make_task', 'save_tokenizers', 'tokenizer_from_json',
]
