"""Sentiment classification with attention pooling on the Hutto & Gilbert (2014) rated sentences.

    train_sentiment(config, workdir)   # config from configs/sentiment.py

Reports accuracy overall and per domain (movie reviews, tweets, Amazon reviews, NYT editorials) on the
validation and test splits, and renders the attention weights over the words of test sentences
(workdir/attention.html and attention.png).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.core import FrozenDict

from attention_jax import visualization
from attention_jax.data import sentiment as sentiment_data
from attention_jax.models.classifier import AttentionPoolingClassifier
from attention_jax.training import fit as fit_lib
from attention_jax.training import steps


def sentiment_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict()
  config.data.data_dir = 'data/vader_sentiment'   # where `experiments.prepare_data --dataset=vader_sentiment` built it
  config.data.label = 'binary'                    # binary (neutral sentences left out) | fine (5 classes)
  config.data.max_length = 48                     # words kept per sentence
  config.data.min_count = 2                       # vocabulary: words seen at least this often in training
  config.model = ml_collections.ConfigDict()
  config.model.scorer = 'dot'                     # Yang et al. 2016 use the dot product with a context query
  config.model.scorer_options = {}
  config.model.weighting = 'softmax'
  config.model.embed_dim = 64
  config.model.hidden_dim = 64
  config.model.attention_dim = 64
  config.model.dropout_rate = 0.3
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_steps = 2000
  config.train.learning_rate = 2e-3
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 2
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256
  config.eval.num_examples_shown = 12             # test sentences rendered with their attention
  return config


def classification_step(state, batch, *, model):
  """Cross-entropy step: batch {'tokens' [B, L], 'label' [B]} -> (state, sums incl. 'count')."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

  def loss_fn(params):
    logits, _ = model.apply({'params': params}, batch['tokens'], train=True, rngs={'dropout': rng})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    return jnp.mean(losses), (logits, losses)

  (loss, (logits, losses)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, _, _ = steps.apply_gradients_if_finite(state, grads, loss)
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  return new_state, {'loss_sum': jnp.sum(losses), 'accuracy_sum': jnp.sum(correct),
                     'count': jnp.asarray(losses.shape[0], jnp.float32)}


@functools.partial(jax.jit, static_argnames='model')
def _predict(params, tokens, model):
  return model.apply({'params': params}, tokens)


def evaluate_split(state, model, source, vocabulary, config, split_name: str = '') -> dict[str, float]:
  """Accuracy and loss overall and per domain."""
  del split_name
  iterator = sentiment_data.batches(source, vocabulary, label=config.data.label, batch_size=int(config.eval.batch_size),
                                    max_length=int(config.data.max_length), seed=0, shuffle=False, drop_remainder=False)
  correct, losses, domains = [], [], []
  for batch in iterator:
    logits, _ = _predict(state.params, jnp.asarray(batch['tokens']), model)
    correct.append(np.asarray(jnp.argmax(logits, -1)) == batch['label'])
    losses.append(np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])))
    domains.append(batch['domain'])
  correct, losses, domains = map(np.concatenate, (correct, losses, domains))
  results = {'accuracy': float(correct.mean()), 'loss': float(losses.mean()), 'count': float(len(correct))}
  for index, domain in enumerate(sentiment_data.DOMAINS):
    if (domains == index).any():
      results[f'accuracy_{domain}'] = float(correct[domains == index].mean())
  return results


def render_attention(state, model, source, vocabulary, config, workdir: str) -> tuple[str, str]:
  """attention.html and attention.png for the first eval.num_examples_shown test sentences."""
  labels = ('negative', 'positive') if config.data.label == 'binary' else sentiment_data.FINE_LABELS
  rows = []
  for i in range(len(source)):
    if len(rows) == int(config.eval.num_examples_shown):
      break
    example = source[i]
    if config.data.label == 'binary' and int(example['binary']) < 0:
      continue
    encoded = sentiment_data.encode_example(example, vocabulary, max_length=int(config.data.max_length),
                                            label=config.data.label)
    logits, weights = _predict(state.params, jnp.asarray(encoded['tokens'])[None], model)
    words = sentiment_data.tokenize(example['text'].decode())[: int(config.data.max_length)]
    predicted = labels[int(jnp.argmax(logits[0]))]
    gold = labels[int(encoded['label'])]
    domain = sentiment_data.DOMAINS[int(example['domain'])]
    rows.append((words, np.asarray(weights[0])[: len(words)], f'[{domain}] predicted {predicted}, gold {gold}'))
  return (visualization.word_attention_html(rows, os.path.join(workdir, 'attention.html')),
          visualization.plot_word_attention(rows, os.path.join(workdir, 'attention.png')))


def train_sentiment(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains, evaluates on validation/test (per domain), renders attention; returns {'validation', 'test'}."""
  os.makedirs(workdir, exist_ok=True)
  builder = sentiment_data.load(config.data.data_dir)
  sources = builder.as_data_source()
  vocab_path = os.path.join(workdir, 'vocab.json')
  if os.path.exists(vocab_path):
    vocabulary = sentiment_data.WordVocabulary.load(vocab_path)
  else:
    train = sources['train']
    vocabulary = sentiment_data.WordVocabulary.build((train[i]['text'].decode() for i in range(len(train))),
                                                     min_count=int(config.data.min_count))
    vocabulary.save(vocab_path)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  num_classes = 2 if config.data.label == 'binary' else len(sentiment_data.FINE_LABELS)
  model = AttentionPoolingClassifier(vocab_size=vocabulary.size, num_classes=num_classes, scorer=config.model.scorer,
                                     scorer_options=FrozenDict(config.model.scorer_options), weighting=config.model.weighting,
                                     embed_dim=config.model.embed_dim, hidden_dim=config.model.hidden_dim,
                                     attention_dim=config.model.attention_dim, dropout_rate=config.model.dropout_rate)
  rng = jax.random.key(int(config.seed))
  tokens = jnp.zeros((1, int(config.data.max_length)), jnp.int32)
  params = model.init({'params': rng, 'dropout': rng}, tokens)['params']
  state = steps.TrainState.create(apply_fn=model.apply, params=params,
                                  tx=optax.adam(float(config.train.learning_rate)),
                                  rng=jax.random.key_data(jax.random.fold_in(rng, 1)))
  batches = iter(sentiment_data.batches(sources['train'], vocabulary, label=config.data.label,
                                        batch_size=int(config.train.batch_size), max_length=int(config.data.max_length),
                                        seed=int(config.seed), shuffle=True))
  evaluate = lambda st, split: evaluate_split(st, model, sources[split], vocabulary, config)
  state = fit_lib.fit(state, jax.jit(functools.partial(classification_step, model=model)), batches, config.train,
                      workdir, evaluate=evaluate, best_metric='accuracy', best_mode='max')
  results = {split: evaluate(state, split) for split in ('validation', 'test')}
  html, png = render_attention(state, model, sources['test'], vocabulary, config, workdir)
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'scorer': config.model.scorer, **results}, f, indent=2)
  print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
  print(f'attention: {html} | {png} | metrics: {os.path.join(workdir, "metrics.jsonl")}', flush=True)
  return results
