"""The fused GRU/LSTM recurrences against Flax's cells, numpy's equations and autodiff of the plain scan."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import score_functions
from attention_jax.models import recurrence
from attention_jax.models import build_model
from attention_jax.models.encoders import RNNEncoder

FLAX_CELLS = {'gru': nn.GRUCell, 'lstm': nn.OptimizedLSTMCell}


class FlaxRNNEncoder(nn.Module):
  """The encoder as it was built on Flax's nn.RNN / nn.Bidirectional with seq_lengths (the reference)."""
  cell_type: str
  hidden_dim: int
  num_layers: int
  bidirectional: bool

  @nn.compact
  def __call__(self, embedded, mask):
    cell = FLAX_CELLS[self.cell_type]
    lengths = jnp.sum(mask, -1).astype(jnp.int32)
    output = lambda carry: carry[1] if isinstance(carry, tuple) else carry
    x = embedded
    for layer in range(self.num_layers):
      forward = nn.RNN(cell(self.hidden_dim), return_carry=True, name=f'forward_{layer}')
      if self.bidirectional:
        backward = nn.RNN(cell(self.hidden_dim), return_carry=True, reverse=True, keep_order=True,
                          name=f'backward_{layer}')
        (carry_f, carry_b), x = nn.Bidirectional(forward, backward, return_carry=True, name=f'layer_{layer}')(
            x, seq_lengths=lengths)
        summary = jnp.concatenate([output(carry_f), output(carry_b)], -1)
      else:
        carry, x = forward(x, seq_lengths=lengths)
        summary = output(carry)
    return jnp.where(mask[..., None], x, 0.0), summary


def _perturbed(params, scale=0.1):
  """params + scale * N(0, 1): Flax initialises every bias to zero, which would hide a misplaced bias."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _inputs(batch=3, length=7, dim=5):
  x = jax.random.normal(jax.random.key(1), (batch, length, dim))
  mask = jnp.arange(length)[None] < jnp.array([length, 4, 1])[:, None]
  return x, mask


@pytest.mark.parametrize('cell_type,bidirectional,num_layers', [('gru', False, 1), ('gru', True, 2),
                                                                ('lstm', True, 1), ('lstm', False, 2)])
def test_encoder_is_flax_rnn_with_the_same_parameters(cell_type, bidirectional, num_layers):
  x, mask = _inputs()
  fused = RNNEncoder(cell_type=cell_type, hidden_dim=4, num_layers=num_layers, bidirectional=bidirectional)
  reference = FlaxRNNEncoder(cell_type, 4, num_layers, bidirectional)
  params = reference.init(jax.random.key(0), x, mask)
  # Same tree, same names, same initial values: checkpoints of the Flax encoder load unchanged.
  own = fused.init(jax.random.key(0), x, mask)
  assert jax.tree.structure(own) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(own), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)

  params = _perturbed(params)
  outputs, summary = fused.apply(params, x, mask)
  expected_outputs, expected_summary = reference.apply(params, x, mask)
  np.testing.assert_allclose(outputs, expected_outputs, atol=1e-6)
  np.testing.assert_allclose(summary, expected_summary, atol=1e-6)

  def objective(model, params, x):
    outputs, summary = model.apply(params, x, mask)
    return jnp.sum(jnp.sin(outputs)) + jnp.sum(jnp.cos(3 * summary))

  grads = jax.grad(objective, argnums=(1, 2))(fused, params, x)
  expected = jax.grad(objective, argnums=(1, 2))(reference, params, x)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_fused_cells_step_like_the_papers_equations_in_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3)).astype(np.float32)
  h = rng.normal(size=(2, 4)).astype(np.float32)
  c = rng.normal(size=(2, 4)).astype(np.float32)

  gru = recurrence.FusedCell('gru', 4)
  params = _perturbed(gru.init(jax.random.key(0), h, x)['params'])
  W = {name: np.asarray(p['kernel']) for name, p in params.items()}
  b = {name: np.asarray(p['bias']) for name, p in params.items() if 'bias' in p}
  r = _sigmoid(x @ W['ir'] + b['ir'] + h @ W['hr'])
  z = _sigmoid(x @ W['iz'] + b['iz'] + h @ W['hz'])
  n = np.tanh(x @ W['in'] + b['in'] + r * (h @ W['hn'] + b['hn']))
  new_h, _ = gru.apply({'params': params}, h, x)
  np.testing.assert_allclose(new_h, (1 - z) * n + z * h, atol=1e-6)

  lstm = recurrence.FusedCell('lstm', 4)
  params = _perturbed(lstm.init(jax.random.key(0), (c, h), x)['params'])
  W = {name: np.asarray(p['kernel']) for name, p in params.items()}
  b = {name: np.asarray(p['bias']) for name, p in params.items() if 'bias' in p}
  gate = {g: x @ W[f'i{g}'] + h @ W[f'h{g}'] + b[f'h{g}'] for g in 'ifgo'}
  new_c = _sigmoid(gate['f']) * c + _sigmoid(gate['i']) * np.tanh(gate['g'])
  (got_c, got_h), out = lstm.apply({'params': params}, (c, h), x)
  np.testing.assert_allclose(got_c, new_c, atol=1e-6)
  np.testing.assert_allclose(got_h, _sigmoid(gate['o']) * np.tanh(new_c), atol=1e-6)
  # Flax's own cells agree on the same parameters.
  _, flax_h = nn.OptimizedLSTMCell(4).apply({'params': params}, (c, h), x)
  np.testing.assert_allclose(got_h, flax_h, atol=1e-6)


def _recurrence_args(cell_type, length=5, batch=3, hidden=4):
  keys = jax.random.split(jax.random.key(2), 5)
  gates = 3 * hidden if cell_type == 'gru' else 4 * hidden
  x_gates = jax.random.normal(keys[0], (length, batch, gates))
  h0 = 0.5 * jax.random.normal(keys[1], (batch, hidden))
  carry0 = (0.5 * jax.random.normal(keys[2], (batch, hidden)), h0) if cell_type == 'lstm' else h0
  kernel = jax.random.normal(keys[3], (hidden, gates)) / 2
  bias = 0.1 * jax.random.normal(keys[4], (gates,))
  valid = jnp.arange(length)[:, None] < jnp.array([length, 2, 0])[None, :]    # incl. an all-padding sequence
  return x_gates, carry0, kernel, bias, valid


def _plain_recurrence(cell_type, x_gates, carry0, kernel, bias, valid):
  """The recurrence as one jax.lax.scan of the gate update (the reference for its custom VJP and read-ahead)."""
  def step(carry, inputs):
    x, ok = inputs
    h_gates = recurrence.cell_output(carry) @ kernel + bias
    new = recurrence.GATE_UPDATES[cell_type](carry, x, h_gates)
    new = jax.tree.map(lambda n, o: jnp.where(ok[:, None], n, o), new, carry)
    return new, recurrence.cell_output(new)

  final, outputs = jax.lax.scan(step, carry0, (x_gates, valid))
  return outputs, final


@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('length', [1, 2, 6])
def test_prefetching_scan_equals_lax_scan_in_values_and_gradients(reverse, length):
  keys = jax.random.split(jax.random.key(3), 3)
  xs = {'a': jax.random.normal(keys[0], (length, 3, 4)), 'b': jax.random.normal(keys[1], (length, 2))}
  carry0 = jax.random.normal(keys[2], (3, 4))

  def step(carry, x):     # depends on the step's own x and its order: an off-by-one read would change it
    carry = jnp.tanh(carry * 1.3 + x['a']) * jax.nn.sigmoid(x['b'][0])
    return carry, {'h': carry, 'b': x['b'] * 2.0}

  def loss(scan, carry0, xs):
    final, ys = scan(step, carry0, xs, reverse=reverse)
    return jnp.sum(jnp.sin(final)) + jnp.sum(ys['h'] * jnp.arange(1, length + 1)[:, None, None]) + jnp.sum(ys['b'] ** 3)

  expected_final, expected_ys = jax.lax.scan(step, carry0, xs, reverse=reverse)
  final, ys = jax.jit(lambda c, x: recurrence.prefetching_scan(step, c, x, reverse=reverse))(carry0, xs)
  np.testing.assert_allclose(final, expected_final, rtol=1e-6)
  for name in ('h', 'b'):
    np.testing.assert_allclose(ys[name], expected_ys[name], rtol=1e-6)
  grads = jax.grad(loss, argnums=(1, 2))(recurrence.prefetching_scan, carry0, xs)
  expected = jax.grad(loss, argnums=(1, 2))(jax.lax.scan, carry0, xs)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('cell_type', ['gru', 'lstm'])
def test_recurrence_backward_pass_equals_autodiff_of_the_plain_scan(cell_type):
  x_gates, carry0, kernel, bias, valid = _recurrence_args(cell_type)

  def loss(run, x_gates, carry0, kernel, bias):
    outputs, final = run(x_gates, carry0, kernel, bias)
    return jnp.sum(jnp.sin(outputs) * jnp.arange(1, outputs.shape[-1] + 1)) + sum(
        jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(final))

  fused = lambda *a: recurrence.recurrence(cell_type, *a, valid)
  plain = lambda *a: _plain_recurrence(cell_type, *a, valid)
  args = (x_gates, carry0, kernel, bias)
  np.testing.assert_allclose(loss(fused, *args), loss(plain, *args), rtol=1e-6)
  grads = jax.grad(loss, argnums=(1, 2, 3, 4))(fused, *args)
  expected = jax.grad(loss, argnums=(1, 2, 3, 4))(plain, *args)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Padding leaves the state alone: the all-padding sequence ends where it started, with no gradient path.
  _, final = fused(*args)
  np.testing.assert_array_equal(recurrence.cell_output(final)[2], recurrence.cell_output(carry0)[2])
  check_grads(lambda *a: loss(fused, *a), args, order=1, modes=('rev',), atol=2e-2, rtol=2e-2)


def test_recurrence_under_jit_and_vmap_matches_a_loop():
  x_gates, carry0, kernel, bias, valid = _recurrence_args('gru')
  kernels = jnp.stack([kernel, -kernel])

  def loss(kernel):
    outputs, final = recurrence.recurrence('gru', x_gates, carry0, kernel, bias, valid)
    return jnp.sum(outputs ** 2) + jnp.sum(final)

  batched = jax.jit(jax.vmap(jax.value_and_grad(loss)))(kernels)
  for i in range(2):
    value, grad = jax.value_and_grad(loss)(kernels[i])
    np.testing.assert_allclose(batched[0][i], value, rtol=1e-6)
    np.testing.assert_allclose(batched[1][i], grad, atol=1e-5)


@pytest.mark.parametrize('query_shape', [(6,), (5, 6)])
def test_tanh_scores_backward_equals_autodiff_of_its_formula(query_shape):
  keys = jax.random.split(jax.random.key(3), 3)
  key_part = jax.random.normal(keys[0], (5, 6))
  query_part = jax.random.normal(keys[1], query_shape)
  v = jax.random.normal(keys[2], (6,))
  weights = jnp.arange(1.0, 6.0)
  formula = lambda k, q, v: jnp.sum(weights * (jnp.tanh(k + q) @ v))
  fused = lambda k, q, v: jnp.sum(weights * score_functions.tanh_scores(k, q, v))
  np.testing.assert_allclose(fused(key_part, query_part, v), formula(key_part, query_part, v), rtol=1e-6)
  grads = jax.grad(fused, argnums=(0, 1, 2))(key_part, query_part, v)
  expected = jax.grad(formula, argnums=(0, 1, 2))(key_part, query_part, v)
  for a, b in zip(grads, expected):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
  check_grads(fused, (key_part, query_part, v), order=1, modes=('rev',), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize('decoder,cell_type,input_feeding', [('bahdanau', 'gru', True), ('bahdanau', 'lstm', True),
                                                            ('luong', 'lstm', True), ('luong', 'gru', False),
                                                            ('none', 'lstm', True)])
def test_hoisted_teacher_forcing_steps_like_the_cell_with_nonzero_biases(decoder, cell_type, input_feeding):
  """The teacher-forced path computes the RNN's input gates outside the scan (y's share with the bias); stepping
  the cell one token at a time computes them from [y; f] inside. Same logits with every bias non-zero."""
  model = build_model({'encoder': 'bigru', 'decoder': decoder, 'decoder_cell': cell_type, 'scorer': 'additive',
                       'embed_dim': 6, 'hidden_dim': 8, 'input_feeding': input_feeding},
                      source_vocab_size=20, target_vocab_size=20, max_source_length=7)
  source = np.array([[5, 6, 7, 8, 2, 0, 0], [9, 4, 2, 0, 0, 0, 0]], np.int32)
  target_in = np.array([[1, 5, 9, 4], [1, 7, 3, 3]], np.int32)
  variables = {'params': _perturbed(model.init(jax.random.key(0), source, target_in)['params'])}
  logits, _ = model.apply(variables, source, target_in)
  memory = model.apply(variables, source, method='encode')
  carry = model.apply(variables, memory, method='initial_state')
  for t in range(target_in.shape[1]):
    carry, step_logits, _ = model.apply(variables, carry, jnp.asarray(target_in[:, t]), memory, method='decode_step')
    np.testing.assert_allclose(step_logits, logits[:, t], atol=2e-5)
