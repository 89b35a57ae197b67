"""The sentiment task: attention-pooling classification of the Hutto & Gilbert (2014) rated sentences.

    config = default_config()                # configs/sentiment.py starts from it
    results = train_and_evaluate(config, workdir)   # {'validation': {...}, 'test': {...}}

Reports accuracy overall and per domain (movie reviews, tweets, Amazon reviews, NYT editorials) on the
validation and test splits, and renders the attention weights over the words of test sentences
(workdir/attention.html and attention.png; one row per hop with structured pooling).
config.model.pooling picks one learned query (Yang et al. 2016) or r = config.model.num_hops of them with
the penalty ||A A^T - I||_F^2 weighted by config.train.hop_penalty_weight (Lin et al. 2017). Trains through the
one loop (training/loop.py): resumable, any parallel mode, multi-process.
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
from attention_jax.models.classifier import POOLINGS, AttentionPoolingClassifier
from attention_jax.training import loop
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.attention_losses import hop_redundancy_penalty
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config

NAME = 'sentiment'
LABELS = ('binary', 'fine')


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = NAME
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
  config.model.pooling = 'context_query'          # one learned query (Yang et al.) | 'structured' (Lin et al.)
  config.model.num_hops = 1                       # r queries of 'structured' pooling, their vectors concatenated
  config.model.embed_dim = 64
  config.model.hidden_dim = 64
  config.model.attention_dim = 64
  config.model.dropout_rate = 0.3
  config.train = train_defaults()
  config.train.update(optimizer='adam', learning_rate=2e-3, warmup_steps=0, grad_clip_norm=0.0, batch_size=64,
                      num_steps=2000, log_every=50, eval_every=500, checkpoint_every=500, keep_checkpoints=2)
  config.train.hop_penalty_weight = 0.0           # coefficient of ||A A^T - I||_F^2 ('structured' pooling)
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256
  config.eval.num_examples_shown = 12             # test sentences rendered with their attention
  config.distributed = distributed_defaults()
  return config


def build_model(config, vocab_size: int) -> AttentionPoolingClassifier:
  num_classes = 2 if config.data.label == 'binary' else len(sentiment_data.FINE_LABELS)
  m = config.model
  return AttentionPoolingClassifier(vocab_size=vocab_size, num_classes=num_classes, scorer=m.scorer,
                                    scorer_options=FrozenDict(m.scorer_options), weighting=m.weighting,
                                    pooling=m.pooling, num_hops=m.num_hops, embed_dim=m.embed_dim,
                                    hidden_dim=m.hidden_dim, attention_dim=m.attention_dim, dropout_rate=m.dropout_rate)


def validate_config(config) -> None:
  """Checks a sentiment config before any data is built; ValueError names the field and the valid values."""
  validate_training_config(config)
  if config.data.label not in LABELS:
    raise ValueError(f'Unknown config.data.label {config.data.label!r}. Valid labels: {", ".join(LABELS)}.')
  check_integer_fields(config, (('data', 'max_length', 1), ('data', 'min_count', 1),
                                ('eval', 'num_examples_shown', 0), ('model', 'num_hops', 1)))
  if config.model.pooling not in POOLINGS:
    raise ValueError(f'Unknown config.model.pooling {config.model.pooling!r}. Valid poolings: {", ".join(POOLINGS)}.')
  if config.model.pooling == 'context_query' and config.model.num_hops != 1:
    raise ValueError(f'config.model.num_hops={config.model.num_hops} needs config.model.pooling=\'structured\' '
                     '(\'context_query\' pooling has one query).')
  penalty = config.train.hop_penalty_weight
  if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or penalty < 0:
    raise ValueError(f'config.train.hop_penalty_weight={penalty!r} must be a number >= 0.')
  if penalty > 0 and config.model.pooling != 'structured':
    raise ValueError(f'config.train.hop_penalty_weight={penalty} penalises the hops of '
                     'config.model.pooling=\'structured\'; with \'context_query\' pooling set it to 0.')
  if not 0.0 <= config.model.dropout_rate < 1.0:
    raise ValueError(f'config.model.dropout_rate={config.model.dropout_rate} must be in [0, 1).')
  # Shapes only: unknown scorer or weighting names fail here with the valid ones.
  jax.eval_shape(build_model(config, 8).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def classification_loss(params, batch: dict, rng, *, train: bool, model, hop_penalty_weight: float = 0.0):
  """Cross-entropy on {'tokens' [B, L], 'label' [B]} (+ hop_penalty_weight x Lin et al.'s penalty of each example
  with 'structured' pooling): (sum over examples, B, sums incl. 'count')."""
  logits, weights = model.apply({'params': params}, batch['tokens'], train=train, rngs={'dropout': rng})
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  count = jnp.asarray(losses.shape[0], jnp.float32)
  metrics = {'loss_sum': jnp.sum(losses), 'accuracy_sum': jnp.sum(correct), 'count': count}
  objective = jnp.sum(losses)
  if weights.ndim == 3:                   # [B, r, S]: structured pooling
    penalty = jnp.sum(hop_redundancy_penalty(weights))
    metrics['hop_penalty_sum'] = penalty
    objective = objective + hop_penalty_weight * penalty
  return objective, count, metrics


@functools.partial(jax.jit, static_argnames='model')
def _predict(params, tokens, model):
  return model.apply({'params': params}, tokens)


def evaluate_split(params, model, source, vocabulary, config) -> dict[str, float]:
  """Accuracy and loss overall and per domain."""
  iterator = sentiment_data.batches(source, vocabulary, label=config.data.label, batch_size=int(config.eval.batch_size),
                                    max_length=int(config.data.max_length), seed=0, shuffle=False, drop_remainder=False)
  correct, losses, domains, penalties = [], [], [], []
  for batch in iterator:
    logits, weights = _predict(params, jnp.asarray(batch['tokens']), model)
    if weights.ndim == 3:
      penalties.append(np.asarray(hop_redundancy_penalty(weights)))
    correct.append(np.asarray(jnp.argmax(logits, -1)) == batch['label'])
    losses.append(np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])))
    domains.append(batch['domain'])
  correct, losses, domains = map(np.concatenate, (correct, losses, domains))
  results = {'accuracy': float(correct.mean()), 'loss': float(losses.mean()), 'count': float(len(correct))}
  if penalties:
    results['hop_penalty'] = float(np.concatenate(penalties).mean())
  for index, domain in enumerate(sentiment_data.DOMAINS):
    if (domains == index).any():
      results[f'accuracy_{domain}'] = float(correct[domains == index].mean())
  return results


def render_attention(params, model, source, vocabulary, config, workdir: str) -> tuple[str, str]:
  """attention.html and attention.png for the first eval.num_examples_shown test sentences (a row per hop with
  structured pooling)."""
  labels = ('negative', 'positive') if config.data.label == 'binary' else sentiment_data.FINE_LABELS
  rows, shown = [], 0
  for i in range(len(source)):
    if shown == int(config.eval.num_examples_shown):
      break
    example = source[i]
    if config.data.label == 'binary' and int(example['binary']) < 0:
      continue
    encoded = sentiment_data.encode_example(example, vocabulary, max_length=int(config.data.max_length),
                                            label=config.data.label)
    logits, weights = _predict(params, jnp.asarray(encoded['tokens'])[None], model)
    words = sentiment_data.tokenize(example['text'].decode())[: int(config.data.max_length)]
    predicted = labels[int(jnp.argmax(logits[0]))]
    gold = labels[int(encoded['label'])]
    domain = sentiment_data.DOMAINS[int(example['domain'])]
    caption = f'[{domain}] predicted {predicted}, gold {gold}'
    shown += 1
    hops = np.asarray(weights[0]).reshape(-1, weights.shape[-1])       # [r, S]; r = 1 for one context query
    for hop, hop_weights in enumerate(hops):
      rows.append((words, hop_weights[: len(words)],
                   caption if len(hops) == 1 else f'{caption}, hop {hop + 1}/{len(hops)}'))
  return (visualization.word_attention_html(rows, os.path.join(workdir, 'attention.html')),
          visualization.plot_word_attention(rows, os.path.join(workdir, 'attention.png')))


def _vocabulary(train_source, config, workdir: str):
  vocab_path = os.path.join(workdir, 'vocab.json')
  if os.path.exists(vocab_path):
    return sentiment_data.WordVocabulary.load(vocab_path)
  vocabulary = sentiment_data.WordVocabulary.build(
      (train_source[i]['text'].decode() for i in range(len(train_source))), min_count=int(config.data.min_count))
  if jax.process_index() == 0:
    vocabulary.save(vocab_path)
  return vocabulary


def train_and_evaluate(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains, evaluates on validation/test (per domain), renders attention; returns {'validation', 'test'}."""
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  sources = sentiment_data.load(config.data.data_dir).as_data_source()
  vocabulary = _vocabulary(sources['train'], config, workdir)
  model = build_model(config, vocabulary.size)
  runner = parallel.Runner(config.train.parallel, functools.partial(
      steps.train_step, loss_fn=functools.partial(classification_loss, model=model,
                                                  hop_penalty_weight=float(config.train.hop_penalty_weight))))
  tokens = jnp.zeros((1, int(config.data.max_length)), jnp.int32)
  state = runner.put_state(steps.create_train_state(model, steps.make_optimizer(config.train), int(config.seed),
                                                    tokens))
  batches = iter(sentiment_data.batches(
      sources['train'], vocabulary, label=config.data.label,
      batch_size=int(config.train.batch_size) // jax.process_count(), max_length=int(config.data.max_length),
      seed=int(config.seed), shuffle=True, process_index=jax.process_index(), process_count=jax.process_count()))
  params, results = loop.train_then_evaluate(
      state, runner, batches, config.train, workdir, best_metric='accuracy',
      on_start=lambda: loop.write_run_config(config, workdir),
      throughput=('count', 'examples_per_second'),
      evaluate_split=lambda params, split: evaluate_split(params, model, sources[split], vocabulary, config))
  if is_chief:
    html, png = render_attention(params, model, sources['test'], vocabulary, config, workdir)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump({'scorer': config.model.scorer, 'pooling': config.model.pooling, 'num_hops': config.model.num_hops,
                 **results}, f, indent=2)
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
    print(f'attention: {html} | {png} | metrics: {os.path.join(workdir, "metrics.jsonl")}', flush=True)
  return results
