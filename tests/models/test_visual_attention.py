"""The recurrent attention model and its CNN baseline: what is sampled, what learns from which loss, jit, batching."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax.models.visual_attention import ConvClassifier, RecurrentAttentionModel
from attention_jax.tasks import visual_attention

SMALL = dict(num_classes=3, glimpse_size=4, glimpse_scales=2, what_dim=8, where_dim=8, glimpse_dim=16, hidden_dim=16)


def _images(batch=3, size=20, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((batch, size, size, 1)), jnp.float32)


@pytest.fixture(scope='module')
def hard():
  model = RecurrentAttentionModel(num_glimpses=4, **SMALL)
  params = model.init(jax.random.key(0), _images())['params']
  return model, params


def test_hard_model_samples_when_training_and_looks_at_the_means_otherwise(hard):
  model, params = hard
  images = _images()
  out = model.apply({'params': params}, images)
  assert out['logits'].shape == (3, 3) and out['locations'].shape == (3, 4, 2)
  assert out['log_probs'].shape == (3, 3) and out['baselines'].shape == (3, 3)
  np.testing.assert_array_equal(np.asarray(out['locations'][:, 0]), 0.0)        # the first glimpse: the centre
  again = model.apply({'params': params}, images)
  np.testing.assert_array_equal(np.asarray(out['locations']), np.asarray(again['locations']))
  # At evaluation the action is the mean: its log-density is the density's peak, -log(2 pi sigma^2).
  np.testing.assert_allclose(np.asarray(out['log_probs']), -np.log(2 * np.pi * model.location_std ** 2), rtol=1e-5)
  sampled = [model.apply({'params': params}, images, train=True, rngs={'location': jax.random.key(k)})
             for k in (1, 2)]
  assert not np.allclose(np.asarray(sampled[0]['locations'][:, 1:]), np.asarray(sampled[1]['locations'][:, 1:]))
  assert np.all(np.abs(np.asarray(sampled[0]['locations'])) <= 1.0)


def test_hard_model_jit_and_batch_of_one_agree(hard):
  model, params = hard
  images = _images(seed=1)
  apply = lambda p, x: model.apply({'params': p}, x)
  eager, jitted = apply(params, images), jax.jit(apply)(params, images)
  for key in eager:
    np.testing.assert_allclose(np.asarray(jitted[key]), np.asarray(eager[key]), rtol=1e-5, atol=1e-6)
  for b in range(3):
    single = apply(params, images[b:b + 1])
    np.testing.assert_allclose(np.asarray(single['logits'][0]), np.asarray(eager['logits'][b]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(single['locations'][0]), np.asarray(eager['locations'][b]), atol=1e-6)


def _loss_grads(model, params, images, labels, **weights):
  loss = functools.partial(visual_attention.classification_loss, model=model, train=True, **weights)
  return jax.grad(lambda p: loss(p, {'image': images, 'label': labels}, jax.random.key(3))[0])(params)


def _norm(tree):
  return float(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def test_hard_locations_learn_only_from_reinforce_and_the_baseline_only_from_its_error(hard):
  model, params = hard
  images, labels = _images(seed=2), jnp.asarray([0, 1, 2])
  classification = _loss_grads(model, params, images, labels, reinforce_weight=0.0, baseline_weight=0.0)
  assert _norm(classification['location_network']) == 0 and _norm(classification['baseline']) == 0
  assert _norm(classification['core']) > 0 and _norm(classification['glimpse_network']) > 0
  policy = _loss_grads(model, params, images, labels, reinforce_weight=1.0, baseline_weight=0.0)
  assert _norm(policy['location_network']) > 0 and _norm(policy['baseline']) == 0
  # REINFORCE never reaches the core: it sees h_t through stop_gradient.
  np.testing.assert_allclose(_norm(policy['core']), _norm(classification['core']), rtol=1e-6)
  baseline = _loss_grads(model, params, images, labels, reinforce_weight=0.0, baseline_weight=1.0)
  assert _norm(baseline['baseline']) > 0 and _norm(baseline['location_network']) == 0


def test_reinforce_term_of_the_loss_is_the_numpy_estimator(hard):
  """The location network's bias gradient from the task's loss (REINFORCE term only) equals numpy's
  -sum over images and steps of (R - b_t) (l_t - mu_t) / sigma^2 * (1 - mu_t^2) on the same sampled episode."""
  model, params = hard
  images, labels = _images(seed=4), jnp.asarray([0, 1, 2])
  rng = jax.random.key(3)                     # the key _loss_grads passes: the same episode
  out = jax.device_get(model.apply({'params': params}, images, train=True, rngs={'location': rng}))
  grads = _loss_grads(model, params, images, labels, reinforce_weight=1.0, baseline_weight=0.0)
  actions, means = np.asarray(out['locations'][:, 1:], np.float64), np.asarray(out['policy_means'], np.float64)
  assert np.all(np.abs(actions) < 1)          # nothing clipped: the locations are the actions drawn
  reward = (np.argmax(out['logits'], -1) == np.asarray(labels)).astype(np.float64)
  advantages = reward[:, None] - np.asarray(out['baselines'], np.float64)                    # [B, n - 1]
  sigma = model.location_std
  want = -np.sum(advantages[..., None] * (actions - means) / sigma ** 2 * (1 - means ** 2), axis=(0, 1))
  np.testing.assert_allclose(np.asarray(grads['location_network']['bias']), want, rtol=1e-4, atol=1e-6)
  assert np.abs(want).max() > 0


def test_soft_model_learns_where_to_look_by_backpropagation():
  model = RecurrentAttentionModel(num_glimpses=3, glimpse='soft', **SMALL)
  images, labels = _images(seed=5), jnp.asarray([0, 1, 2])
  params = model.init(jax.random.key(0), images)['params']
  out = model.apply({'params': params}, images)
  assert 'log_probs' not in out and out['strides'].shape == (3, 3)
  np.testing.assert_allclose(np.asarray(out['strides'][:, 0]), 1.0)
  grads = _loss_grads(model, params, images, labels, reinforce_weight=1.0, baseline_weight=1.0)
  assert _norm(grads['location_network']) > 0 and 'baseline' not in grads


def test_cnn_baseline_shapes_and_size():
  canvas = jax.ShapeDtypeStruct((2, 60, 60, 1), jnp.float32)
  model = ConvClassifier(num_classes=10)
  params = jax.eval_shape(model.init, jax.random.key(0), canvas)['params']
  assert jax.eval_shape(lambda p, x: model.apply({'params': p}, x), params, canvas)['logits'].shape == (2, 10)
  ram_params = jax.eval_shape(RecurrentAttentionModel(num_classes=10).init, jax.random.key(0), canvas)['params']
  # "of comparable size": the default CNN and RAM are within 10% of each other.
  sizes = [visual_attention.parameter_count(p) for p in (params, ram_params)]
  assert abs(sizes[0] - sizes[1]) < 0.1 * sizes[1], sizes


def test_on_item_counts_glimpse_centres_inside_the_box():
  locations = np.array([[[0.0, 0.0], [-1.0, -1.0], [0.9, 0.9]]])      # centres (30,30), (0,0), (57,57) on 60x60
  hits = visual_attention.on_item(locations, np.array([[20, 25]]), canvas_size=60, item_size=28)
  np.testing.assert_array_equal(hits, [[True, False, False]])


def test_one_glimpse_chooses_no_location_and_its_metrics_are_finite():
  model = RecurrentAttentionModel(num_glimpses=1, **SMALL)
  images, labels = _images(seed=6), jnp.asarray([0, 1, 2])
  params = model.init(jax.random.key(0), images)['params']
  loss, count, metrics = visual_attention.classification_loss(
      params, {'image': images, 'label': labels}, jax.random.key(1), train=True, model=model, reinforce_weight=1.0,
      baseline_weight=1.0)
  assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics['baseline_mse_sum']) == 0.0
  assert float(count) == 3 and np.isfinite(float(loss))
