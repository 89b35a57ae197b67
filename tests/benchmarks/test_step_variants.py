"""benchmarks.step_variants: the `same` variants compute the library's loss, gradient and metrics, the upper bounds
do not, the no-guard variants keep the gradient and skip the guard, and the library is restored on exit (also
after an error); the hand-written backward pass of `benchmarks.bahdanau_backward` equals autodiff of its own
forward loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attention_jax.models import build_model
from attention_jax.models import decoders
from attention_jax.tasks import translation
from attention_jax.training import sequence_losses
from attention_jax.training import steps
from benchmarks import bahdanau_backward
from benchmarks import step_variants
from benchmarks import throughput

# An even batch, so that loss_in_halves really splits it.
SPEC = {**throughput.QUICK_SPEC, 'batch_size': 4, 'source_length': 6, 'target_length': 4, 'vocab_size': 40,
        'embed_dim': 8, 'hidden_dim': 12, 'attention_dim': 10}


def _model_and_batch():
  model = build_model(throughput.model_config(SPEC), source_vocab_size=SPEC['vocab_size'],
                      target_vocab_size=SPEC['vocab_size'], max_source_length=SPEC['source_length'])
  batch = throughput.make_batches(SPEC, 1, seed=3)[0]
  batch['source'][1, 3:] = 0                   # padding: the mask matters
  batch['source'][2, 2:] = 0
  batch['target_out'][0, 2:] = 0               # PAD targets: the loss's and metrics' masks differ per example
  params = model.init(jax.random.PRNGKey(0), batch['source'], batch['target_in'])['params']
  return model, batch, params


def _loss_gradient_and_metrics(model, batch, params):
  """The benchmark's own loss (`translation.sequence_loss`, traced now), plus the attention weights' squared sum so
  that the weights' cotangent is not zero: (gradient leaves, metric sums)."""
  loss_fn = throughput._sequence_loss(model)

  def objective(p):
    loss, _, metrics = loss_fn(p, batch, jax.random.PRNGKey(0), train=True)
    _, weights = model.apply({'params': p}, batch['source'], batch['target_in'])
    return loss + 0.3 * jnp.sum(weights * weights), metrics

  grads, metrics = jax.jit(jax.grad(objective, has_aux=True))(params)
  return jax.tree.leaves(grads), {k: float(v) for k, v in metrics.items()}


def _patched_objects():
  return (decoders.BahdanauCell.__dict__['teacher_forced'], decoders._CellBase.__dict__['_setup_common'],
          steps.apply_gradients_if_finite, translation.token_losses, sequence_losses.token_correct)


# One variant of each kind in the default suite (the last also runs the hand-written backward through the model);
# every other variant with `make test-slow`.
DEFAULT_SUITE_VARIANTS = ('chunks_2', 'no_key_grads_in_scan', 'no_guard_hand_written')


@pytest.fixture(scope='module')
def reference():
  """(model, batch, params, the library's gradient leaves, its metric sums)."""
  model, batch, params = _model_and_batch()
  return (model, batch, params, *_loss_gradient_and_metrics(model, batch, params))


@pytest.mark.parametrize('name', [name if name in DEFAULT_SUITE_VARIANTS else pytest.param(name, marks=pytest.mark.slow)
                                  for name in step_variants.VARIANTS])
def test_variant_computes_what_its_kind_says_and_the_library_is_restored(name, reference):
  model, batch, params, want_grads, want_metrics = reference
  original = _patched_objects()
  with step_variants.variant(name):
    assert _patched_objects() != original                          # something was replaced
    grads, metrics = _loss_gradient_and_metrics(model, batch, params)
  assert _patched_objects() == original
  difference = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(grads, want_grads))
  if step_variants.VARIANTS[name].kind in ('same', 'no guard'):
    assert difference < 1e-4
    assert metrics == pytest.approx(want_metrics, rel=1e-6)
  else:
    assert difference > 0.1
  for got, want in zip(_loss_gradient_and_metrics(model, batch, params)[0], want_grads):
    np.testing.assert_array_equal(got, want)


def test_default_suite_variants_cover_every_kind():
  assert ({step_variants.VARIANTS[name].kind for name in DEFAULT_SUITE_VARIANTS}
          == {entry.kind for entry in step_variants.VARIANTS.values()})


def test_the_library_is_restored_when_the_body_raises():
  original = _patched_objects()
  with pytest.raises(RuntimeError, match='inside'):
    with step_variants.variant('no_guard_hand_written'):
      assert _patched_objects() != original
      raise RuntimeError('inside')
  assert _patched_objects() == original


def test_no_guard_applies_a_non_finite_update_that_the_library_skips():
  params = {'w': jnp.ones(3)}
  state = steps.TrainState.create(apply_fn=None, params=params, tx=optax.adam(0.1), rng=jnp.zeros(2, jnp.uint32))
  grads = {'w': jnp.array([1.0, jnp.nan, 1.0])}
  kept, _, skipped_at = steps.apply_gradients_if_finite(state, grads, jnp.float32(1.0))
  np.testing.assert_array_equal(kept.params['w'], params['w'])
  assert int(skipped_at) == int(state.step)
  with step_variants.variant('no_guard'):
    updated, _, _ = steps.apply_gradients_if_finite(state, grads, jnp.float32(1.0))
  assert bool(jnp.isnan(updated.params['w'][1])) and int(updated.step) == int(state.step) + 1


def test_unsupported_decoders_are_refused_not_rewritten():
  config = {**throughput.model_config(SPEC), 'locality': 'local_m'}
  model = build_model(config, source_vocab_size=SPEC['vocab_size'], target_vocab_size=SPEC['vocab_size'],
                      max_source_length=SPEC['source_length'])
  batch = throughput.make_batches(SPEC, 1)[0]
  for name in ('chunks_2', 'hand_written_decoder_backward', 'projected_values'):
    with step_variants.variant(name), pytest.raises(ValueError, match='global softmax attention'):
      model.init(jax.random.PRNGKey(0), batch['source'], batch['target_in'])


def test_hand_written_backward_equals_autodiff_of_its_forward_loop():
  batch, length, sources, hidden, attention_dim, values_dim = 3, 4, 5, 6, 7, 8
  keys = jax.random.split(jax.random.PRNGKey(1), 9)
  normal = lambda key, shape: 0.5 * jax.random.normal(key, shape, jnp.float32)
  params = bahdanau_backward.StepParams(
      hidden_kernel=normal(keys[0], (hidden, 3 * hidden)), hidden_bias=normal(keys[1], (3 * hidden,)),
      context_kernel=normal(keys[2], (values_dim, 3 * hidden)), query_kernel=normal(keys[3], (hidden, attention_dim)),
      v=normal(keys[4], (attention_dim,)))
  inputs = (normal(keys[5], (length, batch, 3 * hidden)), normal(keys[6], (batch, hidden)),
            normal(keys[7], (batch, sources, attention_dim)), normal(keys[8], (batch, sources, values_dim)))
  mask = jnp.array([[True] * sources, [True, True, False, False, False], [False] * sources])   # one row all padding
  forward = lambda *args: bahdanau_backward._forward(*args, mask)[:3]
  got, got_vjp = jax.vjp(lambda *args: bahdanau_backward.teacher_forced_scan(*args, mask), params, *inputs)
  want, want_vjp = jax.vjp(forward, params, *inputs)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)
  assert float(jnp.max(jnp.abs(got[2][:, 2]))) == 0.0               # a fully masked row: zero weights
  cotangents = tuple(normal(k, x.shape) for k, x in zip(jax.random.split(jax.random.PRNGKey(2), 3), want))
  for g, w in zip(jax.tree.leaves(got_vjp(cotangents)), jax.tree.leaves(want_vjp(cotangents))):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=2e-6)


def test_step_variants_runs_and_refuses_an_unknown_variant(tmp_path, capsys):
  out = tmp_path / 'variants.json'
  result = step_variants.main(['--quick', '--rounds', '1', '--variants', 'chunks_2', '--out', str(out)])
  [row] = result['rows']
  assert row['variant'] == 'chunks_2' and row['same_gradient'] and row['first_loss_equal']
  assert row['base_ms'] > 0 and row['variant_ms'] > 0 and row['grad_base_ms'] > 0
  assert len(row['round_ratios'].split()) == len(row['grad_round_ratios'].split()) == 1
  assert json.loads(out.read_text())['rows'] == result['rows']
  with pytest.raises(SystemExit):
    step_variants.main(['--quick', '--variants', 'no_such_variant'])
  assert 'unknown variant' in capsys.readouterr().err
