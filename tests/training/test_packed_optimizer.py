"""packed_optimizer: small leaves packed into one vector, the optimizer's values unchanged."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from attention_jax.training import checkpointing
from attention_jax.training import packed_optimizer
from attention_jax.training import steps

MAX = packed_optimizer.MAX_PACKED_LEAF_SIZE


def _tree(seed=0):
  """Leaves below, at and above the packing limit, a non-float leaf and a scalar, nested."""
  keys = jax.random.split(jax.random.key(seed), 6)
  return {'encoder': {'kernel': jax.random.normal(keys[0], (64, 96)), 'bias': jax.random.normal(keys[1], (96,))},
          'big': jax.random.normal(keys[2], (MAX + 1,)),
          'at_limit': jax.random.normal(keys[3], (128, MAX // 128)),
          'scale': jax.random.normal(keys[4], ()),
          'decoder': [jax.random.normal(keys[5], (7, 3)), jnp.arange(5, dtype=jnp.int32)]}


def test_pack_places_leaves_by_size_and_dtype_and_unpack_inverts_it():
  tree = _tree()
  packed = packed_optimizer.pack(tree)
  # Tree order (dict keys sorted): at_limit, big, decoder[0], decoder[1] (int32), encoder/bias, encoder/kernel, scale.
  small = [tree['at_limit'], tree['decoder'][0], tree['encoder']['bias'], tree['encoder']['kernel'], tree['scale']]
  np.testing.assert_array_equal(packed.small, np.concatenate([np.ravel(x) for x in small]))
  assert len(packed.large) == 2
  np.testing.assert_array_equal(packed.large[0], tree['big'])
  np.testing.assert_array_equal(packed.large[1], tree['decoder'][1])
  like = jax.eval_shape(lambda: tree)              # abstract leaves are enough to unpack
  jax.tree.map(np.testing.assert_array_equal, packed_optimizer.unpack(packed, like), tree)
  jax.tree.map(np.testing.assert_array_equal, packed_optimizer.unpack(packed, tree), tree)


def test_pack_with_nothing_small_and_a_mismatched_unpack():
  tree = {'w': jnp.ones((4, 4))}
  packed = packed_optimizer.pack(tree, max_leaf_size=8)
  assert packed.small.shape == (0,) and len(packed.large) == 1
  jax.tree.map(np.testing.assert_array_equal, packed_optimizer.unpack(packed, tree, max_leaf_size=8), tree)
  with pytest.raises(ValueError, match=re.escape('do not come from a tree like the given one')):
    packed_optimizer.unpack(packed_optimizer.pack({'w': jnp.ones(3)}), {'w': jnp.ones(4)})


def test_global_norm_is_the_norm_of_every_entry():
  tree = _tree()
  floats = [np.ravel(x).astype(np.float64) for x in jax.tree.leaves(tree)]
  expected = np.sqrt(sum(np.sum(x ** 2) for x in floats))
  np.testing.assert_allclose(packed_optimizer.global_norm(tree), expected, rtol=1e-6)


@pytest.mark.parametrize('inner', [
    optax.adam(1e-2),
    optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(1e-2, weight_decay=0.1)),
], ids=['adam', 'clip_adamw'])
def test_packed_optimizer_matches_the_inner_one_on_the_tree(inner):
  params = {k: v for k, v in _tree(0).items() if k != 'decoder'}
  params['decoder'] = [_tree(0)['decoder'][0]]
  packed_tx = packed_optimizer.pack_small_leaves(inner)
  state, packed_state = inner.init(params), packed_tx.init(params)
  assert _has_packed_leaves(packed_state)
  tree_params = packed_params = params
  for i in range(3):
    grads = jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 1)) * 3.0, tree_params)
    updates, state = inner.update(grads, state, tree_params)
    packed_updates, packed_state = jax.jit(packed_tx.update)(grads, packed_state, packed_params)
    assert jax.tree.structure(packed_updates) == jax.tree.structure(updates)
    # Elementwise math is the same; the clipping's global norm sums in another order (float32 rounding).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-8), packed_updates, updates)
    tree_params = optax.apply_updates(tree_params, updates)
    packed_params = optax.apply_updates(packed_params, packed_updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), packed_params, tree_params)


def _has_packed_leaves(optimizer_state) -> bool:
  is_packed = lambda x: isinstance(x, packed_optimizer.PackedLeaves)
  return any(is_packed(x) for x in jax.tree.leaves(optimizer_state, is_leaf=is_packed))


def test_make_optimizer_packs_and_matches_clipping_then_adam_on_the_tree():
  train = ml_collections.ConfigDict({'optimizer': 'adam', 'schedule': 'constant', 'warmup_steps': 0,
                                     'learning_rate': 0.1, 'grad_clip_norm': 1.0, 'weight_decay': 0.0})
  params = {'a': jnp.zeros(3), 'b': jnp.zeros((2, 2))}
  tx = steps.make_optimizer(train)
  reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1))
  unclipped = optax.adam(0.1)
  state, reference_state, unclipped_state = tx.init(params), reference.init(params), unclipped.init(params)
  assert _has_packed_leaves(state)
  # A gradient of norm 100 (clipped to 1), then one of norm 0.5: Adam's second step depends on their ratio.
  for scale in (100.0, 0.5):
    grads = {'a': jnp.array([0.6, 0.0, -0.3]) * scale, 'b': jnp.array([[0.0, 0.8], [0.1, 0.0]]) * scale}
    grads = jax.tree.map(lambda g: g / optax.tree.norm(grads) * scale, grads)
    updates, state = tx.update(grads, state, params)
    expected, reference_state = reference.update(grads, reference_state, params)
    without_clipping, unclipped_state = unclipped.update(grads, unclipped_state, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected)
  assert not np.allclose(updates['a'], without_clipping['a'], rtol=1e-3)


def test_a_checkpoint_with_unpacked_moments_resumes_packed_and_trains_on_the_same(tmp_path):
  params = {'dense': {'kernel': jnp.ones((3, 4)), 'bias': jnp.zeros((4,))}, 'embed': jnp.ones((MAX + 1,))}
  inner = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-2))
  grads = [jax.tree.map(lambda x, i=i: jnp.cos(x + jnp.arange(x.size).reshape(x.shape) * (i + 1)), params)
           for i in range(2)]
  # A run of the layout before packing, checkpointed after one step.
  unpacked = steps.TrainState.create(apply_fn=None, params=params, tx=inner, rng=jnp.zeros((2,), jnp.uint32))
  unpacked = unpacked.apply_gradients(grads=grads[0])
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=1, best_metric=None)
  checkpoints.save(1, unpacked, {'next_index': 7})
  checkpoints.wait()
  packed_tx = packed_optimizer.pack_small_leaves(inner)
  fresh = steps.TrainState.create(apply_fn=None, params=params, tx=packed_tx, rng=jnp.ones((2,), jnp.uint32))
  state, data_state = checkpoints.restore_latest(checkpointing.abstract_like(fresh))
  assert data_state == {'next_index': 7} and int(state.step) == 1 and state.tx is packed_tx
  jax.tree.map(np.testing.assert_array_equal, state.params, unpacked.params)
  np.testing.assert_array_equal(state.rng, unpacked.rng)
  saved_adam, restored_adam = unpacked.opt_state[1][0], state.opt_state[1][0]
  assert isinstance(restored_adam.mu, packed_optimizer.PackedLeaves)
  for moment in ('mu', 'nu'):
    jax.tree.map(np.testing.assert_array_equal, getattr(restored_adam, moment),
                 packed_optimizer.pack(getattr(saved_adam, moment)))
  # The next step continues the saved run (to the clipping norm's summation order).
  continued, resumed = unpacked.apply_gradients(grads=grads[1]), state.apply_gradients(grads=grads[1])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), resumed.params, continued.params)
  # A checkpoint of another model still fails with the mismatch message.
  other = steps.TrainState.create(apply_fn=None, params={**params, 'embed': jnp.ones((MAX + 2,))}, tx=packed_tx,
                                  rng=jnp.zeros((2,), jnp.uint32))
  with pytest.raises(ValueError, match=r'params/embed is saved as \(16385,\), expected \(16386,\)'):
    checkpoints.restore_latest(checkpointing.abstract_like(other))
  # So does one whose optimizer state differs in more than the packing (here: no clipping's state).
  unclipped = steps.TrainState.create(apply_fn=None, params=params, tx=packed_optimizer.pack_small_leaves(
      optax.adam(1e-2)), rng=jnp.zeros((2,), jnp.uint32))
  with pytest.raises(ValueError, match=r'was written by a different model: .*\(opt_state/'):
    checkpoints.restore_latest(checkpointing.abstract_like(unclipped))
  checkpoints.close()


def test_stacked_seed_states_with_unpacked_moments_restore_packed_per_seed(tmp_path):
  params = {'w': jnp.ones((3, 4)), 'b': jnp.zeros((4,))}
  inner = optax.adam(1e-2)

  def trained(tx, seed):
    state = steps.TrainState.create(apply_fn=None, params=params, tx=tx, rng=jnp.zeros((2,), jnp.uint32))
    grads = jax.tree.map(lambda x: jnp.sin(x + seed + jnp.arange(x.size).reshape(x.shape)), params)
    return state.apply_gradients(grads=grads)

  stack = lambda states: jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  unpacked = stack([trained(inner, seed) for seed in (0, 1)])         # as studies/ saves K seeds: leading axis
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=1, best_metric=None)
  checkpoints.save(1, unpacked, {})
  checkpoints.wait()
  packed_tx = packed_optimizer.pack_small_leaves(inner)
  expected = stack([trained(packed_tx, seed) for seed in (0, 1)])
  state, _ = checkpoints.restore_latest(checkpointing.abstract_like(expected))
  assert state.opt_state[0].mu.small.shape == (2, 16)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state.opt_state, expected.opt_state)
  jax.tree.map(np.testing.assert_array_equal, state.params, unpacked.params)
  checkpoints.close()


def test_averaging_checkpoints_written_before_and_after_packing(tmp_path):
  params = {'w': jnp.ones((3, 4)), 'b': jnp.zeros((4,))}
  inner = optax.adam(1e-2)
  states = []
  for step, tx in ((1, inner), (2, packed_optimizer.pack_small_leaves(inner))):    # a run resumed across it
    state = steps.TrainState.create(apply_fn=None, params=jax.tree.map(lambda x, s=step: x + s, params), tx=tx,
                                    rng=jnp.zeros((2,), jnp.uint32))
    states.append(state.replace(step=jnp.asarray(step, jnp.int32)))
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=2, best_metric=None)
  for state in states:
    checkpoints.save(int(state.step), state, {})
  checkpoints.wait()
  for abstract in (None, checkpointing.abstract_like(states[1])):
    averaged = checkpointing.average_checkpoints(str(tmp_path), 2, abstract)
    assert averaged.steps == [1, 2]
    np.testing.assert_allclose(checkpointing._params(averaged.state)['w'], np.full((3, 4), 2.5))
    np.testing.assert_allclose(checkpointing._params(averaged.state)['b'], np.full((4,), 1.5))
  checkpoints.close()
