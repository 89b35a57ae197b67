"""benchmarks.step_variants: each `same` variant computes the library's gradient (with padded sources), each upper
bound does not, the no-guard variants keep the gradient, the library is restored afterwards, and the hand-written backward pass of
`benchmarks.bahdanau_backward` equals autodiff of its own forward loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax.models import build_model
from attention_jax.models import decoders
from attention_jax.training import steps
from benchmarks import bahdanau_backward
from benchmarks import step_variants
from benchmarks import throughput

SPEC = {**step_variants.QUICK_SPEC, 'batch_size': 3, 'source_length': 6, 'target_length': 4, 'vocab_size': 40,
        'embed_dim': 8, 'hidden_dim': 12, 'attention_dim': 10}


def _model_and_batch():
  model = build_model(throughput.model_config(SPEC), source_vocab_size=SPEC['vocab_size'],
                      target_vocab_size=SPEC['vocab_size'], max_source_length=SPEC['source_length'])
  batch = throughput.make_batches(SPEC, 1, seed=3)[0]
  batch['source'][1, 3:] = 0                   # padding: the mask matters
  batch['source'][2, 2:] = 0
  params = model.init(jax.random.PRNGKey(0), batch['source'], batch['target_in'])['params']
  return model, batch, params


def _gradient(model, batch, params):
  def loss(p):
    logits, weights = model.apply({'params': p}, batch['source'], batch['target_in'])
    picked = jnp.take_along_axis(jax.nn.log_softmax(logits), batch['target_out'][..., None], -1)
    return -jnp.sum(picked) + 0.3 * jnp.sum(weights * weights)          # the weights' cotangent too
  return jax.tree.leaves(jax.jit(jax.grad(loss))(params))


def test_same_variants_keep_the_gradient_and_upper_bounds_drop_part_of_it():
  model, batch, params = _model_and_batch()
  reference = _gradient(model, batch, params)
  original = (decoders.BahdanauCell.__dict__['teacher_forced'], decoders._CellBase.__dict__['_setup_common'],
              steps.apply_gradients_if_finite)
  for name, (kind, _) in step_variants.VARIANTS.items():
    with step_variants.variant(name):
      grads = _gradient(model, batch, params)
    difference = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(grads, reference))
    if kind in ('same', 'no guard'):                 # no guard: the same gradient, another update
      assert difference < 1e-4, name
    else:
      assert difference > 0.1, name
  # Restored: the library's own methods again.
  assert (decoders.BahdanauCell.__dict__['teacher_forced'], decoders._CellBase.__dict__['_setup_common'],
          steps.apply_gradients_if_finite) == original
  for got, want in zip(_gradient(model, batch, params), reference):
    np.testing.assert_array_equal(got, want)


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
  assert json.loads(out.read_text())['rows'] == result['rows']
  with pytest.raises(SystemExit):
    step_variants.main(['--quick', '--variants', 'no_such_variant'])
  assert 'unknown variant' in capsys.readouterr().err
