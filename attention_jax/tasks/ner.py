"""The named-entity recognition task: CoNLL-2003 tagging with a BiLSTM and self-attention over the sentence
(attention_jax.models.tagger), against the same BiLSTM without attention.

    config = default_config()                 # configs/ner_conll2003.py starts from it
    results = train_and_evaluate(config, workdir)   # {'validation': {...}, 'test': {...}}

Loss: the tags' cross-entropy summed over words / the number of words. Reports entity-level precision, recall and
F1 overall and per type (conlleval conventions, attention_jax.metrics.ner) and word accuracy; draws, for the first
eval.num_examples_shown test sentences, which words informed each word's tag (attention.png and
attention/sentence_k.png: rows are the words with their predicted tags, columns the words attended to). Trains
through the one loop (training/loop.py): resumable, any parallel mode, multi-process.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.core import FrozenDict

from attention_jax import visualization
from attention_jax.data import batching
from attention_jax.data import ner as ner_data
from attention_jax.data import registry
from attention_jax.metrics.ner import entity_scores
from attention_jax.models.tagger import ATTENTIONS, AttentionTagger, check_scorer
from attention_jax.special_tokens import WORD_PAD_ID
from attention_jax.training import loop
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config

NAME = 'ner'


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = NAME
  config.seed = 0
  config.data = ml_collections.ConfigDict()
  config.data.name = 'conll2003'
  config.data.data_dir = ''                        # '' = the dataset's default (data/conll2003)
  config.data.bucket_lengths = (16, 32, 64, 128)   # training sentences longer than the last are cut
  config.data.min_word_count = 2                   # rarer training words are UNK, so UNK's embedding is trained
  config.model = ml_collections.ConfigDict()
  config.model.attention = 'self'                  # self | none (the BiLSTM baseline)
  config.model.scorer = 'general'
  config.model.scorer_options = {}
  config.model.weighting = 'softmax'
  config.model.embed_dim = 100
  config.model.case_dim = 8
  config.model.hidden_dim = 128
  config.model.dropout_rate = 0.3
  config.train = train_defaults()
  config.train.update(optimizer='adam', learning_rate=1e-3, warmup_steps=0, grad_clip_norm=5.0, batch_size=32,
                      num_steps=6000, log_every=100, eval_every=1000, checkpoint_every=1000, keep_checkpoints=2)
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256
  config.eval.num_examples_shown = 4
  config.distributed = distributed_defaults()
  return config


def build_model(config, vocab_size: int) -> AttentionTagger:
  m = config.model
  return AttentionTagger(vocab_size=vocab_size, num_cases=len(ner_data.CASES), num_tags=len(ner_data.NER_TAGS),
                         attention=m.attention, scorer=m.scorer, scorer_options=FrozenDict(m.scorer_options),
                         weighting=m.weighting, embed_dim=int(m.embed_dim), case_dim=int(m.case_dim),
                         hidden_dim=int(m.hidden_dim), dropout_rate=float(m.dropout_rate))


def _example_inputs(config):
  length = min(config.data.bucket_lengths)
  return jnp.ones((1, length), jnp.int32), jnp.ones((1, length), jnp.int32)


def validate_config(config) -> None:
  """Checks an NER config before any data is built; ValueError names the field and the valid values."""
  validate_training_config(config)
  registry.get(config.data.name, kind='tagging')
  if config.model.attention not in ATTENTIONS:
    raise ValueError(f'Unknown config.model.attention {config.model.attention!r}. Valid attentions: '
                     f'{", ".join(ATTENTIONS)}.')
  if not list(config.data.bucket_lengths):
    raise ValueError('config.data.bucket_lengths is empty: give one or more sentence lengths, e.g. (16, 32, 64).')
  batching.check_boundaries(config.data.bucket_lengths, 'config.data.bucket_lengths')
  check_scorer(config.model.scorer)
  check_integer_fields(config, (('data', 'min_word_count', 1), ('model', 'hidden_dim', 1),
                                ('eval', 'num_examples_shown', 0)))
  jax.eval_shape(build_model(config, 10).init, jax.random.key(0), *_example_inputs(config))


def tagging_loss(params, batch: dict, rng, *, train: bool, model):
  """Cross-entropy over the words of {'words', 'cases', 'tags'}: (sum, words, sums). Padding is where words is
  WORD_PAD_ID (real words are never 0: unknown ones are WORD_UNK_ID), which also covers a batch's filler rows."""
  logits, _ = model.apply({'params': params}, batch['words'], batch['cases'], train=train, rngs={'dropout': rng})
  mask = batch['words'] != WORD_PAD_ID
  tags = jnp.where(mask, batch['tags'], 0)
  log_p = jax.nn.log_softmax(logits)
  losses = -jnp.take_along_axis(log_p, tags[..., None], axis=-1)[..., 0] * mask
  count = jnp.sum(mask).astype(jnp.float32)
  correct = jnp.sum((jnp.argmax(logits, -1) == tags) * mask).astype(jnp.float32)
  return jnp.sum(losses), count, {'loss_sum': jnp.sum(losses), 'token_accuracy_sum': correct, 'count': count}


def predict_split(params, apply_fn, source, vocabulary, config):
  """(gold tag names, predicted tag names, words, attention weights or None) per sentence of a split."""
  gold, predicted, words, weights = [], [], [], []
  for batch in ner_data.evaluation_batches(source, vocabulary, batch_size=int(config.eval.batch_size),
                                           bucket_lengths=tuple(config.data.bucket_lengths)):
    logits, attention = jax.device_get(apply_fn(params, jnp.asarray(batch['words']), jnp.asarray(batch['cases'])))
    best = np.argmax(logits, -1)
    for i, length in enumerate(batch['length']):
      gold.append([ner_data.NER_TAGS[t] for t in batch['tags'][i, :length]])
      predicted.append([ner_data.NER_TAGS[t] for t in best[i, :length]])
      words.append(batch['text'][i])
      weights.append(None if attention is None else attention[i, :length, :length])
  return gold, predicted, words, weights


def evaluate_split(params, apply_fn, source, vocabulary, config) -> dict[str, float]:
  gold, predicted, _, _ = predict_split(params, apply_fn, source, vocabulary, config)
  results = entity_scores(gold, predicted)
  right = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
  results['token_accuracy'] = right / max(sum(len(g) for g in gold), 1)
  return results


def save_attention_views(params, apply_fn, test_source, vocabulary, config, workdir: str) -> list[str]:
  """Heatmaps of the first eval.num_examples_shown test sentences (self-attention only)."""
  shown = min(int(config.eval.num_examples_shown), len(test_source))
  if config.model.attention == 'none' or not shown:
    return []
  subset = [test_source[i] for i in range(shown)]
  gold, predicted, words, weights = predict_split(params, apply_fn, subset, vocabulary, config)
  paths = []
  for k in range(shown):
    rows = [f'{w} {p}' + ('' if p == g else f' (gold {g})') for w, p, g in zip(words[k], predicted[k], gold[k])]
    path = os.path.join(workdir, 'attention.png' if k == 0 else os.path.join('attention', f'sentence_{k}.png'))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    paths.append(visualization.plot_attention(weights[k], words[k], rows, path))
  return paths


def train_and_evaluate(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains the tagger, evaluates validation/test, draws the attention; returns {'validation', 'test'}."""
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  sources = ner_data.load_sources(config.data.data_dir or registry.get(config.data.name).data_dir)
  vocabulary = ner_data.TagVocabulary.from_source(sources['train'], min_count=int(config.data.min_word_count))
  model = build_model(config, vocabulary.size)
  runner = parallel.Runner(config.train.parallel, functools.partial(
      steps.train_step, loss_fn=functools.partial(tagging_loss, model=model)))
  state = runner.put_state(steps.create_train_state(model, steps.make_optimizer(config.train), int(config.seed),
                                                    *_example_inputs(config)))
  batches = ner_data.batches(
      sources['train'], vocabulary, batch_size=int(config.train.batch_size),
      bucket_lengths=tuple(config.data.bucket_lengths), seed=int(config.seed), process_index=jax.process_index(),
      process_count=jax.process_count())
  apply_fn = jax.jit(lambda params, words, cases: model.apply({'params': params}, words, cases))
  params, results = loop.train_then_evaluate(
      state, runner, batches, config.train, workdir, best_metric='f1', throughput=('count', 'words_per_second'),
      on_start=lambda: loop.write_run_config(config, workdir),
      evaluate_split=lambda params, split: evaluate_split(params, apply_fn, sources[split], vocabulary, config))
  if is_chief:
    views = save_attention_views(params, apply_fn, sources['test'], vocabulary, config, workdir)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2)
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
    if views:
      print(f'attention: {views[0]} (+{len(views) - 1} under {os.path.join(workdir, "attention")})', flush=True)
  return results
