"""The digit-strips task: reading strips of handwritten digits (or Fashion-MNIST clothes) with spatial attention
(Show, Attend and Tell style).

    config = default_config()                # configs/digit_strips.py and configs/fashion_strips.py start from it
    results = train_and_evaluate(config, workdir)   # {'validation': {...}, 'test': {...}}

Loss: (sum of the target tokens' cross-entropy + lambda * the sum over images of the doubly stochastic penalty
(Xu et al. 2015)) / the number of target tokens, so both terms share one denominator and the update is the same on
any number of devices; lambda weighs an image's penalty against one target token. Reports sequence accuracy (the
whole strip read right), token accuracy, and attention-in-span accuracy: how often the attention peak of output
step t falls inside the columns of the t-th digit. Saves attention overlays on test images. Trains through the one
loop (training/loop.py): resumable, any parallel mode, multi-process.
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

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.data import digit_strips as digit_data
from attention_jax.models.image_to_sequence import ImageToSequence, doubly_stochastic_penalty, grid_shape
from attention_jax.special_tokens import PAD_ID
from attention_jax.training import loop
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config
from attention_jax.training.sequence_losses import token_losses

NAME = 'digit_strips'


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = NAME
  config.seed = 0
  config.data = ml_collections.ConfigDict()
  config.data.source = 'sklearn_digits'         # sklearn_digits (8x8) | fashion_mnist (28x28)
  config.data.data_dir = 'data/digit_strips'     # where `experiments.prepare_data --dataset=digit_strips` built it
  config.data.min_digits = 3
  config.data.max_digits = 5
  config.data.num_train = 20000
  config.data.num_eval = 1000
  config.model = ml_collections.ConfigDict()
  config.model.decoder = 'bahdanau'              # attend from the previous state, as Xu et al.
  config.model.scorer = 'additive'
  config.model.scorer_options = {'hidden_dim': 64}
  config.model.weighting = 'softmax'
  config.model.conv_features = (32, 64, 128)
  config.model.conv_pool = (True, True, False)   # 8x40 image -> 2x10 grid of 128-d features (2 cells per digit)
  config.model.embed_dim = 16
  config.model.hidden_dim = 128
  config.model.decoder_cell = 'lstm'
  config.model.dropout_rate = 0.1
  config.train = train_defaults()
  config.train.update(optimizer='adam', learning_rate=2e-3, warmup_steps=0, grad_clip_norm=0.0, batch_size=64,
                      num_steps=3000, log_every=50, eval_every=1000, checkpoint_every=500, keep_checkpoints=2)
  config.train.doubly_stochastic = 0.0           # lambda per image (see the module docstring); 0 disables
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 250
  config.eval.num_overlays = 4
  config.distributed = distributed_defaults()
  return config


def build_model(config) -> ImageToSequence:
  m = config.model
  return ImageToSequence(vocab_size=digit_data.VOCAB_SIZE, decoder=m.decoder, scorer=m.scorer,
                         scorer_options=FrozenDict(m.scorer_options), weighting=m.weighting,
                         conv_features=tuple(m.conv_features), conv_pool=tuple(m.conv_pool), embed_dim=m.embed_dim,
                         hidden_dim=m.hidden_dim, decoder_cell=m.decoder_cell, dropout_rate=m.dropout_rate)


def _example_inputs(config):
  size = digit_data.ITEM_SIZES[config.data.source]
  image = jnp.zeros((1, size, size * int(config.data.max_digits), 1))
  return image, jnp.zeros((1, int(config.data.max_digits) + 1), jnp.int32)


def validate_config(config) -> None:
  """Checks a digit-strips config before any data is built; ValueError names the field and the valid values."""
  validate_training_config(config)
  if config.data.source not in digit_data.ITEM_SIZES:
    raise ValueError(f'Unknown config.data.source {config.data.source!r}. Valid sources: '
                     f'{", ".join(digit_data.ITEM_SIZES)}.')
  check_integer_fields(config, (('data', 'min_digits', 1), ('data', 'max_digits', 1), ('data', 'num_train', 1),
                                ('data', 'num_eval', 1), ('eval', 'num_overlays', 0)))
  if config.data.min_digits > config.data.max_digits:
    raise ValueError(f'config.data.min_digits={config.data.min_digits} must be <= config.data.max_digits='
                     f'{config.data.max_digits}.')
  if config.train.doubly_stochastic < 0:
    raise ValueError(f'config.train.doubly_stochastic={config.train.doubly_stochastic} must be >= 0.')
  # Shapes only: unknown decoder/scorer names and bad conv specs fail here.
  jax.eval_shape(build_model(config).init, jax.random.key(0), *_example_inputs(config))


def caption_loss(params, batch: dict, rng, *, train: bool, model, penalty: float):
  """Teacher forcing on {'image', 'target_in', 'target_out'}: (token cross-entropy + penalty * sum over images
  of the doubly stochastic penalty, number of target tokens, sums incl. 'count')."""
  mask = batch['target_out'] != PAD_ID
  logits, weights = model.apply({'params': params}, batch['image'], batch['target_in'], train=train,
                                rngs={'dropout': rng})
  losses = token_losses(logits, batch['target_out'], 0.0)
  token_loss_sum = jnp.sum(losses * mask)
  penalty_sum = jnp.sum(doubly_stochastic_penalty(weights, mask))
  count = jnp.sum(mask).astype(jnp.float32)
  correct = jnp.sum((jnp.argmax(logits, -1) == batch['target_out']) * mask).astype(jnp.float32)
  metrics = {'loss_sum': token_loss_sum, 'token_accuracy_sum': correct, 'penalty_sum': penalty_sum, 'count': count}
  return token_loss_sum + penalty * penalty_sum, count, metrics


def span_hits(weights: np.ndarray, spans: np.ndarray, grid: tuple[int, int], image_width: int) -> tuple[int, int]:
  """(hits, total): output steps whose attention peak (summed over grid rows) lies in the digit's columns."""
  h, w = grid
  column_weight = np.asarray(weights).reshape(*weights.shape[:-1], h, w).sum(-2)     # [B, T, w]
  cell = image_width / w
  peak_column = (column_weight.argmax(-1) + 0.5) * cell                             # image x of the peak cell
  valid = spans[..., 0] >= 0
  hit = (peak_column >= spans[..., 0]) & (peak_column < spans[..., 1]) & valid
  return int(hit.sum()), int(valid.sum())


def evaluate_split(params, model, source, config, grid) -> dict[str, float]:
  max_digits = int(config.data.max_digits)
  iterator = digit_data.batches(source, batch_size=int(config.eval.batch_size), max_digits=max_digits, seed=0,
                                shuffle=False, drop_remainder=False)
  exact, tokens_right, tokens_total, hits, total = 0, 0, 0, 0, 0
  count = 0
  for batch in iterator:
    decoded, weights = decoding.greedy_decode(model, params, jnp.asarray(batch['image']),
                                              max_length=max_digits + 1)
    decoded, weights = np.asarray(decoded), np.asarray(weights)
    for i in range(len(decoded)):
      want = digit_data.decode_digits(batch['target_out'][i])
      got = digit_data.decode_digits(decoded[i])
      exact += got == want
      tokens_right += sum(a == b for a, b in zip(got, want))
      tokens_total += len(want)
    h, t = span_hits(weights, batch['spans'], grid, batch['image'].shape[2])
    hits, total, count = hits + h, total + t, count + len(decoded)
  return {'sequence_accuracy': exact / count, 'digit_accuracy': tokens_right / max(tokens_total, 1),
          'attention_in_span': hits / max(total, 1)}


def save_overlays(params, model, test_source, config, grid, directory: str) -> list[str]:
  """Attention overlays of the first eval.num_overlays test strips."""
  source, max_digits = config.data.source, int(config.data.max_digits)
  overlays = []
  for i in range(min(int(config.eval.num_overlays), len(test_source))):
    example = digit_data.encode_example(test_source[i], max_digits=max_digits)
    decoded, weights = decoding.greedy_decode(model, params, jnp.asarray(example['image'])[None],
                                              max_length=max_digits + 1)
    names = digit_data.CLASS_NAMES[source]
    read = [names[int(d)] for d in digit_data.decode_digits(decoded[0])]
    truth = [names[int(d)] for d in digit_data.decode_digits(example['target_out'])]
    labels = read + ['</s>']
    overlays.append(visualization.plot_image_attention(
        example['image'], np.asarray(weights[0])[: len(labels)], grid, labels,
        os.path.join(directory, f'test_{i:02d}.png'), title=f'read {" ".join(read)!r}, true {" ".join(truth)!r}'))
  return overlays


def train_and_evaluate(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains the reader, evaluates validation/test, saves overlays; returns {'validation', 'test'}."""
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  counts = {'train': int(config.data.num_train), 'validation': int(config.data.num_eval),
            'test': int(config.data.num_eval)}
  builder = digit_data.load(config.data.data_dir, source=config.data.source, min_digits=int(config.data.min_digits),
                            max_digits=int(config.data.max_digits), counts=counts)
  sources = builder.as_data_source()
  model = build_model(config)
  image, target = _example_inputs(config)
  grid = grid_shape(model, image.shape[1], image.shape[2])
  loss_fn = functools.partial(caption_loss, model=model, penalty=float(config.train.doubly_stochastic))
  runner = parallel.Runner(config.train.parallel, functools.partial(steps.train_step, loss_fn=loss_fn))
  state = runner.put_state(steps.create_train_state(model, steps.make_optimizer(config.train), int(config.seed),
                                                    image, target))
  batches = iter(digit_data.batches(
      sources['train'], batch_size=int(config.train.batch_size) // jax.process_count(),
      max_digits=int(config.data.max_digits), seed=int(config.seed), shuffle=True,
      process_index=jax.process_index(), process_count=jax.process_count()))
  params, results = loop.train_then_evaluate(
      state, runner, batches, config.train, workdir, best_metric='sequence_accuracy',
      on_start=lambda: loop.write_run_config(config, workdir),
      throughput=('count', 'tokens_per_second'),
      evaluate_split=lambda params, split: evaluate_split(params, model, sources[split], config, grid))
  if is_chief:
    overlays = save_overlays(params, model, sources['test'], config, grid, os.path.join(workdir, 'overlays'))
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2)
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
    print(f'overlays: {os.path.join(workdir, "overlays")} ({len(overlays)} PNG)', flush=True)
  return results
