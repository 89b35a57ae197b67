"""Reading strips of handwritten digits (or Fashion-MNIST clothes) with spatial attention (Show, Attend and Tell
style).

    train_digit_reader(config, workdir)   # config from configs/digit_strips.py or configs/fashion_strips.py

Loss: token cross-entropy + lambda * the doubly stochastic penalty (Xu et al. 2015). Reports sequence
accuracy (the whole strip read right), token accuracy, and attention-in-span accuracy: how often the attention
peak of output step t falls inside the columns of the t-th digit. Saves attention overlays on test images.
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

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.data import digit_strips as digit_data
from attention_jax.models.image_to_sequence import ImageToSequence, doubly_stochastic_penalty, grid_shape
from attention_jax.training import fit as fit_lib
from attention_jax.training import steps


def digit_strips_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = 'digit_strips'
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
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_steps = 3000
  config.train.learning_rate = 2e-3
  config.train.doubly_stochastic = 0.0           # lambda; Xu et al. use ~1 (per-image sum over grid cells)
  config.train.log_every = 50
  config.train.eval_every = 1000
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 2
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 250
  config.eval.num_overlays = 4
  return config


def caption_step(state, batch, *, model, penalty: float):
  """Teacher-forced step on {'image', 'target_in', 'target_out'} -> (state, sums incl. 'count')."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  mask = batch['target_out'] != digit_data.PAD_ID

  def loss_fn(params):
    logits, weights = model.apply({'params': params}, batch['image'], batch['target_in'], train=True,
                                  rngs={'dropout': rng})
    losses = steps.token_losses(logits, batch['target_out'], 0.0)
    token_loss = jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1)
    regulariser = jnp.mean(doubly_stochastic_penalty(weights, mask))
    return token_loss + penalty * regulariser, (logits, losses, regulariser)

  (loss, (logits, losses, regulariser)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, _, _ = steps.apply_gradients_if_finite(state, grads, loss)
  count = jnp.sum(mask).astype(jnp.float32)
  correct = jnp.sum((jnp.argmax(logits, -1) == batch['target_out']) * mask)
  return new_state, {'loss_sum': jnp.sum(losses * mask), 'token_accuracy_sum': correct.astype(jnp.float32),
                     'penalty_sum': regulariser * count, 'count': count}


def span_hits(weights: np.ndarray, spans: np.ndarray, grid: tuple[int, int], image_width: int) -> tuple[int, int]:
  """(hits, total): output steps whose attention peak (summed over grid rows) lies in the digit's columns."""
  h, w = grid
  column_weight = np.asarray(weights).reshape(*weights.shape[:-1], h, w).sum(-2)     # [B, T, w]
  cell = image_width / w
  peak_column = (column_weight.argmax(-1) + 0.5) * cell                             # image x of the peak cell
  valid = spans[..., 0] >= 0
  hit = (peak_column >= spans[..., 0]) & (peak_column < spans[..., 1]) & valid
  return int(hit.sum()), int(valid.sum())


def evaluate_split(state, model, source, config, grid) -> dict[str, float]:
  max_digits = int(config.data.max_digits)
  iterator = digit_data.batches(source, batch_size=int(config.eval.batch_size), max_digits=max_digits, seed=0,
                                shuffle=False, drop_remainder=False)
  exact, tokens_right, tokens_total, hits, total = 0, 0, 0, 0, 0
  count = 0
  for batch in iterator:
    decoded, weights = decoding.greedy_decode(model, state.params, jnp.asarray(batch['image']),
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


def train_digit_reader(config, workdir: str) -> dict[str, dict[str, float]]:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  counts = {'train': int(config.data.num_train), 'validation': int(config.data.num_eval),
            'test': int(config.data.num_eval)}
  source = config.data.source
  builder = digit_data.load(config.data.data_dir, source=source, min_digits=int(config.data.min_digits),
                            max_digits=int(config.data.max_digits), counts=counts)
  sources = builder.as_data_source()
  m = config.model
  model = ImageToSequence(vocab_size=digit_data.VOCAB_SIZE, decoder=m.decoder, scorer=m.scorer,
                          scorer_options=FrozenDict(m.scorer_options), weighting=m.weighting,
                          conv_features=tuple(m.conv_features), conv_pool=tuple(m.conv_pool), embed_dim=m.embed_dim,
                          hidden_dim=m.hidden_dim, decoder_cell=m.decoder_cell, dropout_rate=m.dropout_rate)
  size = digit_data.ITEM_SIZES[source]
  width = size * int(config.data.max_digits)
  grid = grid_shape(model, size, width)
  rng = jax.random.key(int(config.seed))
  image = jnp.zeros((1, size, width, 1))
  target = jnp.zeros((1, int(config.data.max_digits) + 1), jnp.int32)
  params = model.init({'params': rng, 'dropout': rng}, image, target)['params']
  state = steps.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(float(config.train.learning_rate)),
                                  rng=jax.random.key_data(jax.random.fold_in(rng, 1)))
  batches = iter(digit_data.batches(sources['train'], batch_size=int(config.train.batch_size),
                                    max_digits=int(config.data.max_digits), seed=int(config.seed), shuffle=True))
  step = jax.jit(functools.partial(caption_step, model=model, penalty=float(config.train.doubly_stochastic)))
  evaluate = lambda st, split: evaluate_split(st, model, sources[split], config, grid)
  state = fit_lib.fit(state, step, batches, config.train, workdir, evaluate=evaluate,
                      best_metric='sequence_accuracy', best_mode='max')
  results = {split: evaluate(state, split) for split in ('validation', 'test')}
  overlays = []
  test = sources['test']
  for i in range(min(int(config.eval.num_overlays), len(test))):
    example = digit_data.encode_example(test[i], max_digits=int(config.data.max_digits))
    decoded, weights = decoding.greedy_decode(model, state.params, jnp.asarray(example['image'])[None],
                                              max_length=int(config.data.max_digits) + 1)
    names = digit_data.CLASS_NAMES[source]
    read = [names[int(d)] for d in digit_data.decode_digits(decoded[0])]
    truth = [names[int(d)] for d in digit_data.decode_digits(example['target_out'])]
    labels = read + ['</s>']
    overlays.append(visualization.plot_image_attention(
        example['image'], np.asarray(weights[0])[: len(labels)], grid, labels,
        os.path.join(workdir, 'overlays', f'test_{i:02d}.png'),
        title=f'read {" ".join(read)!r}, true {" ".join(truth)!r}'))
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
  print(f'overlays: {os.path.join(workdir, "overlays")} ({len(overlays)} PNG)', flush=True)
  return results
