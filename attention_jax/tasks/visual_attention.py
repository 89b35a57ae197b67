"""The visual-attention task: classify a Fashion-MNIST item placed somewhere on a 60x60 canvas (optionally cluttered)
by looking at it a few glimpses at a time (Mnih et al. 2014, RAM; or DRAW-style soft glimpses), or with a CNN.

    config = default_config()                   # configs/glimpses.py and configs/glimpses_sweep.py start from it
    results = train_and_evaluate(config, workdir)   # {'validation': {...}, 'test': {...}}

config.model.kind: 'ram' (attention_jax.models.visual_attention.RecurrentAttentionModel, glimpse 'hard' or 'soft')
or 'cnn' (ConvClassifier).

Loss per image (Mnih et al.'s hybrid loss), averaged over the batch:
    -log p(y | x)                                              the classifier (and, through it, the core and glimpse
                                                               network; for soft glimpses also where to look)
  + reinforce_weight * -sum_t (R - b_t) log pi(l_t)            REINFORCE for the hard locations, R = 1 if the
                                                               sampled episode classified the image right, else 0
  + baseline_weight * sum_t (b_t - R)^2                        the learned baseline
At evaluation the locations are the policy's means (no sampling). Reports accuracy, error, and for RAM how often a
glimpse after the first lands on the item (its centre inside the item's 28x28 box); saves the glimpse paths of
test canvases as attention.png (numbered rectangles of the finest patch; the item's box dashed). Trains through
the one loop (training/loop.py): resumable, any parallel mode, multi-process.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attention_jax import glimpses
from attention_jax import visualization
from attention_jax.data import canvases
from attention_jax.data import registry
from attention_jax.models.visual_attention import GLIMPSES, ConvClassifier, RecurrentAttentionModel
from attention_jax.training import loop
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config

NAME = 'visual_attention'
KINDS = ('ram', 'cnn')
NUM_CLASSES = len(canvases.CLASS_NAMES)


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = NAME
  config.seed = 0
  config.data = ml_collections.ConfigDict()
  config.data.name = 'fashion_canvases'          # fashion_canvases | fashion_cluttered
  config.data.data_dir = ''                      # '' = the dataset's default (data/<name>)
  config.model = ml_collections.ConfigDict()
  config.model.kind = 'ram'                      # ram | cnn
  config.model.glimpse = 'hard'                  # ram: hard (REINFORCE) | soft (DRAW-style, backpropagation)
  config.model.num_glimpses = 6
  config.model.glimpse_size = 12                 # Mnih et al.'s 60x60 setting: 12x12 patches at 3 scales
  config.model.glimpse_scales = 3
  config.model.what_dim = 128
  config.model.where_dim = 128
  config.model.glimpse_dim = 256
  config.model.hidden_dim = 256
  config.model.location_std = 0.15
  config.model.conv_layers = ((16, 10, 5),)      # cnn: (features, kernel, stride) per VALID convolution; Mnih et
  config.model.conv_hidden_dim = 256             # al.'s had 8 filters: 16 brings it to RAM's ~0.5M parameters
  config.train = train_defaults()
  config.train.update(optimizer='adam', learning_rate=1e-3, warmup_steps=0, grad_clip_norm=0.0, batch_size=64,
                      num_steps=6000, log_every=100, eval_every=2000, checkpoint_every=1000, keep_checkpoints=2)
  config.train.reinforce_weight = 1.0
  config.train.baseline_weight = 1.0
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 500
  config.eval.num_examples_shown = 8             # test canvases drawn with their glimpse paths (attention.png)
  config.distributed = distributed_defaults()
  return config


def build_model(config):
  m = config.model
  if m.kind == 'cnn':
    return ConvClassifier(NUM_CLASSES, tuple(tuple(int(v) for v in layer) for layer in m.conv_layers),
                          int(m.conv_hidden_dim))
  return RecurrentAttentionModel(NUM_CLASSES, num_glimpses=int(m.num_glimpses), glimpse=m.glimpse,
                                 glimpse_size=int(m.glimpse_size), glimpse_scales=int(m.glimpse_scales),
                                 what_dim=int(m.what_dim), where_dim=int(m.where_dim), glimpse_dim=int(m.glimpse_dim),
                                 hidden_dim=int(m.hidden_dim), location_std=float(m.location_std))


def _example_image() -> jax.Array:
  return jnp.zeros((1, canvases.CANVAS_SIZE, canvases.CANVAS_SIZE, 1), jnp.float32)


def validate_config(config) -> None:
  """Checks a visual-attention config before any data is built; ValueError names the field and the valid values."""
  validate_training_config(config)
  registry.get(config.data.name, kind='image_classification')
  if config.model.kind not in KINDS:
    raise ValueError(f'Unknown config.model.kind {config.model.kind!r}. Valid kinds: {", ".join(KINDS)}.')
  if config.model.glimpse not in GLIMPSES:
    raise ValueError(f'Unknown config.model.glimpse {config.model.glimpse!r}. Valid glimpses: {", ".join(GLIMPSES)}.')
  check_integer_fields(config, (('model', 'num_glimpses', 1), ('model', 'glimpse_size', 1),
                                ('model', 'glimpse_scales', 1), ('model', 'hidden_dim', 1), ('model', 'what_dim', 1),
                                ('model', 'where_dim', 1), ('model', 'glimpse_dim', 1),
                                ('model', 'conv_hidden_dim', 1), ('eval', 'num_examples_shown', 0)))
  if not config.model.location_std > 0:
    raise ValueError(f'config.model.location_std={config.model.location_std} must be positive.')
  for name in ('reinforce_weight', 'baseline_weight'):
    if config.train[name] < 0:
      raise ValueError(f'config.train.{name}={config.train[name]} must be >= 0.')
  jax.eval_shape(build_model(config).init, jax.random.key(0), _example_image())


def classification_loss(params, batch: dict, rng, *, train: bool, model, reinforce_weight: float,
                        baseline_weight: float):
  """Mnih et al.'s hybrid loss on {'image' [B, S, S, 1], 'label' [B]} (see the module docstring):
  (loss sum, number of images, metric sums incl. 'count')."""
  out = model.apply({'params': params}, batch['image'], train=train, rngs={'location': rng})
  labels = batch['label']
  log_p = jax.nn.log_softmax(out['logits'].astype(jnp.float32))
  cross_entropy = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  reward = (jnp.argmax(log_p, -1) == labels).astype(jnp.float32)
  total = cross_entropy
  metrics = {'loss_sum': jnp.sum(cross_entropy), 'accuracy_sum': jnp.sum(reward)}
  if 'log_probs' in out:                          # hard glimpses (with one glimpse no location is chosen: all 0)
    policy = glimpses.reinforce_surrogate(out['log_probs'], reward, out['baselines'])
    baseline_error = jnp.sum(jnp.square(out['baselines'] - reward[:, None]), axis=-1)
    total = total + reinforce_weight * policy + baseline_weight * baseline_error
    steps_chosen = max(out['baselines'].shape[1], 1)
    metrics['baseline_mse_sum'] = jnp.sum(baseline_error) / steps_chosen
  metrics['count'] = jnp.asarray(labels.shape[0], jnp.float32)
  return jnp.sum(total), metrics['count'], metrics


def on_item(locations: np.ndarray, boxes: np.ndarray, canvas_size: int, item_size: int) -> np.ndarray:
  """[B, n] bool: whether each glimpse's centre lies inside the item's box (top, left) [B, 2]."""
  centres = np.asarray(glimpses.location_to_pixels(np.clip(locations, -1, 1), canvas_size, canvas_size))  # [B, n, 2]
  low = np.asarray(boxes, np.float64)[:, None, :]
  return np.all((centres >= low) & (centres < low + item_size), axis=-1)


def evaluate_split(params, apply_fn, source, config) -> dict[str, float]:
  iterator = canvases.batches(source, batch_size=int(config.eval.batch_size), seed=0, shuffle=False,
                              drop_remainder=False)
  right, count, hits, glimpses_seen = 0, 0, 0, 0
  for batch in iterator:
    out = jax.device_get(apply_fn(params, jnp.asarray(batch['image'])))
    right += int(np.sum(np.argmax(out['logits'], -1) == batch['label']))
    count += len(batch['label'])
    if 'locations' in out and out['locations'].shape[1] > 1:
      hit = on_item(out['locations'][:, 1:], batch['box'], canvases.CANVAS_SIZE, canvases.ITEM_SIZE)
      hits, glimpses_seen = hits + int(hit.sum()), glimpses_seen + hit.size
  results = {'accuracy': right / count, 'error': 1 - right / count}
  if glimpses_seen:
    results['glimpses_on_item'] = hits / glimpses_seen
  return results


def save_glimpse_paths(params, apply_fn, test_source, config, path: str) -> str | None:
  """attention.png: the first eval.num_examples_shown test canvases with their glimpse paths (RAM only)."""
  shown = min(int(config.eval.num_examples_shown), len(test_source))
  if config.model.kind != 'ram' or not shown:
    return None
  examples = [canvases.encode_example(test_source[i]) for i in range(shown)]
  images = np.stack([e['image'] for e in examples])
  out = jax.device_get(apply_fn(params, jnp.asarray(images)))
  predicted = np.argmax(out['logits'], -1)
  titles = [f'{canvases.CLASS_NAMES[int(p)]} ({"right" if p == e["label"] else canvases.CLASS_NAMES[int(e["label"])]})'
            for p, e in zip(predicted, examples)]
  centres = np.asarray(glimpses.location_to_pixels(np.clip(out['locations'], -1, 1), *images.shape[1:3]))
  return visualization.plot_glimpse_paths(
      images[..., 0], centres, out['strides'] * int(config.model.glimpse_size),
      np.stack([e['box'] for e in examples]), canvases.ITEM_SIZE, titles, path)


def parameter_count(params) -> int:
  """The number of parameters (of arrays or of shape structs)."""
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def train_and_evaluate(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains the classifier, evaluates validation/test, draws glimpse paths; returns {'validation', 'test'}."""
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  data_dir = config.data.data_dir or registry.get(config.data.name).data_dir
  sources = canvases.load(data_dir, variant=config.data.name).as_data_source()
  model = build_model(config)
  loss_fn = functools.partial(classification_loss, model=model, reinforce_weight=float(config.train.reinforce_weight),
                              baseline_weight=float(config.train.baseline_weight))
  runner = parallel.Runner(config.train.parallel, functools.partial(steps.train_step, loss_fn=loss_fn))
  state = runner.put_state(steps.create_train_state(model, steps.make_optimizer(config.train), int(config.seed),
                                                    _example_image()))
  batches = iter(canvases.batches(
      sources['train'], batch_size=int(config.train.batch_size) // jax.process_count(), seed=int(config.seed),
      shuffle=True, process_index=jax.process_index(), process_count=jax.process_count()))
  apply_fn = jax.jit(lambda params, images: model.apply({'params': params}, images, train=False))
  params, results = loop.train_then_evaluate(
      state, runner, batches, config.train, workdir, best_metric='accuracy',
      on_start=lambda: loop.write_run_config(config, workdir),
      evaluate_split=lambda params, split: evaluate_split(params, apply_fn, sources[split], config))
  results['test']['parameters'] = parameter_count(params)
  if is_chief:
    picture = save_glimpse_paths(params, apply_fn, sources['test'], config, os.path.join(workdir, 'attention.png'))
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2)
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
    if picture:
      print(f'glimpse paths: {picture}', flush=True)
  return results
