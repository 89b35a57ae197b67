"""Encoder/decoder/scorer combinations at tiny shapes: step == teacher forcing, masking, padding, errors."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import memory_efficient
from attention_jax import scoring
from attention_jax.models import ENCODERS, Seq2Seq, build_model

V, S_LEN, T_LEN = 11, 6, 4
SOURCE = jnp.array([[5, 6, 7, 8, 2, 0], [4, 9, 2, 0, 0, 0]], jnp.int32)
TARGET_IN = jnp.array([[1, 5, 6, 7], [1, 4, 9, 0]], jnp.int32)


def make(encoder='bigru', decoder='bahdanau', scorer='additive', **overrides):
  config = dict(encoder=encoder, decoder=decoder, scorer=scorer, embed_dim=8, hidden_dim=8, num_heads=2, mlp_dim=16,
                decoder_cell='lstm' if 'lstm' in encoder else 'gru', scorer_options={})
  config.update(overrides)
  return build_model(config, source_vocab_size=V, target_vocab_size=V, max_source_length=S_LEN)


def stepwise(model, variables, source, target_in):
  memory = model.apply(variables, source, method=Seq2Seq.encode)
  carry = model.apply(variables, memory, method=Seq2Seq.initial_state)
  logits, weights = [], []
  for t in range(target_in.shape[1]):
    carry, l_t, w_t = model.apply(variables, carry, target_in[:, t], memory, method=Seq2Seq.decode_step)
    logits.append(l_t)
    weights.append(w_t)
  return jnp.stack(logits, 1), jnp.stack(weights, 1)


# The default suite: every encoder, both decoder styles (stepwise and the parallel Luong path), a stateful scorer
# in each, the no-attention baseline. `make test-slow` adds every scorer with both decoders (COVERING) and the rest
# of the product; each scorer's equation and gradients are checked alone in tests/test_scoring.py.
COMBOS = sorted(
    {(e, 'bahdanau', 'additive', True) for e in ENCODERS if e != 'transformer'}
    | {('transformer', 'luong', 'dot', False), ('bigru', 'bahdanau', 'location_aware', True),
       ('lstm', 'luong', 'general', True), ('gru', 'none', 'additive', True)})
COVERING = sorted(
    {('bigru', 'bahdanau', s, True) for s in scoring.names()}
    | {('transformer', 'luong', s, False) for s in ('dot', 'general', 'location_aware', 'cosine')}
    | {(e, 'bahdanau', 'additive', True) for e in ENCODERS}
    | {('lstm', 'luong', 'general', True), ('gru', 'none', 'additive', True)})
ALL_COMBOS = [c for c in itertools.product(ENCODERS, ('bahdanau', 'luong', 'none'), scoring.names(), (True, False))
              if c not in COMBOS and (c[1] == 'luong' or c[3] or c in COVERING)]


@pytest.mark.parametrize('encoder,decoder,scorer,input_feeding', COMBOS)
def test_combination_trains_and_steps_like_teacher_forcing(encoder, decoder, scorer, input_feeding):
  check_combination(encoder, decoder, scorer, input_feeding)


@pytest.mark.slow
@pytest.mark.parametrize('encoder,decoder,scorer,input_feeding', ALL_COMBOS)
def test_every_other_combination(encoder, decoder, scorer, input_feeding):
  # Jitted, 9 programs a combination. Run eagerly, every op is a program of its own (~290 for the first
  # combination, fewer for later ones, which share many), and in one process jaxlib 0.10 segfaulted after 59-131
  # of these ~180 combinations, while compiling or reading or writing the persistent compilation cache (three runs
  # out of three; jitted, all passed in one process). The default suite's few combinations run eagerly: sharing
  # the one-op programs, they take less time than compiling each one's whole programs.
  check_combination(encoder, decoder, scorer, input_feeding, jit=True)


@pytest.mark.parametrize('weighting, decoder, scorer', [
    ('sparsemax', 'bahdanau', 'additive'), ('entmax15', 'luong', 'general'),
    pytest.param('entmax15', 'bahdanau', 'additive', marks=pytest.mark.slow),
    pytest.param('sparsemax', 'luong', 'general', marks=pytest.mark.slow)])
def test_sparse_weightings_in_both_decoders(weighting, decoder, scorer):
  check_combination('bigru', decoder, scorer, True, weighting=weighting)


@pytest.mark.parametrize('options', [dict(weighting='sparsemax'), dict(locality='local_m', local_window=1)])
def test_luong_parallel_attention_in_query_chunks_equals_stepping(monkeypatch, options):
  # The parallel Luong path attends with all T_LEN states at once; with a threshold every input reaches, its
  # Attention module takes them in chunks of 3 (one chunk, then the last position): attend_prepared (a global
  # weighting) or score_prepared (local_m, whose window the decoder applies to the scores). Stepping attends one
  # state at a time, unchunked.
  model = make('bigru', 'luong', 'concat', input_feeding=False, **options)
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  scans = lambda: str(jax.make_jaxpr(lambda v: model.apply(v, SOURCE, TARGET_IN))(variables)).count('scan[')
  loss = lambda v: jnp.sum(model.apply(v, SOURCE, TARGET_IN)[0] ** 2)
  unchunked, unchunked_scans = (model.apply(variables, SOURCE, TARGET_IN), jax.grad(loss)(variables)), scans()
  monkeypatch.setattr(memory_efficient, 'CHUNK_ELEMENTS', 1)
  monkeypatch.setattr(memory_efficient, 'DEFAULT_CHUNK_SIZE', 3)
  chunked = (model.apply(variables, SOURCE, TARGET_IN), jax.grad(loss)(variables))
  assert scans() == unchunked_scans + 1
  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6), chunked, unchunked)
  for got, want in zip(stepwise(model, variables, SOURCE, TARGET_IN), chunked[0]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def check_combination(encoder, decoder, scorer, input_feeding, jit=False, **overrides):
  """Shapes, weights on real tokens summing to 1, stepwise == teacher forcing, finite useful gradients; with jit,
  each of init, apply, stepping and the gradient is one jitted program."""
  compiled = jax.jit if jit else (lambda f: f)
  model = make(encoder, decoder, scorer, input_feeding=input_feeding, **overrides)
  variables = compiled(model.init)(jax.random.key(0), SOURCE, TARGET_IN)
  logits, weights = compiled(model.apply)(variables, SOURCE, TARGET_IN)
  assert logits.shape == (2, T_LEN, V) and logits.dtype == jnp.float32
  assert weights.shape == (2, T_LEN, S_LEN)
  source_mask = np.asarray(SOURCE != 0)
  w = np.asarray(weights)
  if decoder == 'none':
    np.testing.assert_array_equal(w, 0.0)
  else:
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert np.all(w[~np.broadcast_to(source_mask[:, None, :], w.shape)] == 0.0)
  step_logits, step_weights = compiled(functools.partial(stepwise, model))(variables, SOURCE, TARGET_IN)
  np.testing.assert_allclose(step_logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(step_weights, weights, rtol=1e-5, atol=1e-6)

  def loss(params):
    logits, _ = model.apply({'params': params}, SOURCE, TARGET_IN, train=True, rngs={'dropout': jax.random.key(1)})
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 3])

  grads = compiled(jax.grad(loss))(variables['params'])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  attention_grads = jax.tree.leaves(grads['cell'].get('attention', {}))
  if attention_grads:   # parameterised scorers learn through the loss
    assert any(np.abs(g).max() > 0 for g in attention_grads)


@pytest.mark.parametrize('encoder,scorer', [('bigru', 'additive'), pytest.param('lstm', 'general', marks=pytest.mark.slow),
                                            pytest.param('transformer', 'dot', marks=pytest.mark.slow)])
def test_extra_source_padding_changes_nothing(encoder, scorer):
  model = make(encoder, 'bahdanau', scorer)
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  logits, weights = model.apply(variables, SOURCE, TARGET_IN)
  padded = jnp.pad(SOURCE, ((0, 0), (0, 3)))
  logits_p, weights_p = model.apply(variables, padded, TARGET_IN)
  np.testing.assert_allclose(logits_p, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(weights_p[..., :S_LEN], weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(weights_p[..., S_LEN:], 0.0)


def test_examples_in_a_batch_are_independent():
  model = make('bigru', 'luong', 'general')
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  logits, _ = model.apply(variables, SOURCE, TARGET_IN)
  logits_1, _ = model.apply(variables, SOURCE[1:], TARGET_IN[1:])
  np.testing.assert_allclose(logits_1[0], logits[1], rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training_and_on_the_bahdanau_readout():
  model = make('bigru', 'bahdanau', 'additive', dropout_rate=0.5)
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  eval_a, _ = model.apply(variables, SOURCE, TARGET_IN)
  eval_b, _ = model.apply(variables, SOURCE, TARGET_IN)
  np.testing.assert_array_equal(eval_a, eval_b)
  train, _ = model.apply(variables, SOURCE, TARGET_IN, train=True, rngs={'dropout': jax.random.key(3)})
  assert not np.allclose(train, eval_a)

  # The decoder alone (Seq2Seq's embedding dropout would change the recurrence's inputs) under train=True: the
  # attention, i.e. the recurrence, is eval's, and logits = W_o (m * r / keep) + b with eval's readout r and a
  # 0/1 mask m, as when stepping `__call__`. V > H, so r is recovered from the logits by least squares.
  def decode(m, train):
    memory = m.encode(SOURCE)
    return m.cell.teacher_forced(m.initial_state(memory), m.target_embed(TARGET_IN), memory, train=train)

  eval_logits, eval_weights = model.apply(variables, False, method=decode)
  train_logits, train_weights = model.apply(variables, True, method=decode, rngs={'dropout': jax.random.key(3)})
  np.testing.assert_array_equal(train_weights, eval_weights)
  kernel = np.asarray(variables['params']['cell']['output']['kernel'], np.float64)     # [H, V]
  bias = np.asarray(variables['params']['cell']['output']['bias'], np.float64)
  readout = lambda logits: np.linalg.lstsq(kernel.T, (np.asarray(logits, np.float64) - bias).reshape(-1, V).T,
                                           rcond=None)[0].T                             # [B * T, H]
  eval_r, train_r = readout(eval_logits), readout(train_logits)
  np.testing.assert_allclose(train_r @ kernel + bias, np.asarray(train_logits).reshape(-1, V), atol=1e-4)
  dropped = np.abs(train_r) < 1e-4
  kept = np.isclose(train_r, 2.0 * eval_r, rtol=1e-3, atol=1e-4)
  assert np.all(dropped | kept) and dropped.any() and kept.any()


def test_bad_model_configs_list_valid_choices():
  with pytest.raises(ValueError, match='Unknown encoder .cnn.. Valid encoders: gru, lstm, bigru, bilstm, transformer'):
    make(encoder='cnn')
  with pytest.raises(ValueError, match='Unknown decoder .*Valid decoders: bahdanau, luong, none'):
    make(decoder='attention')
  with pytest.raises(ValueError, match='Unknown scorer .*Valid scorers'):
    make(scorer='mlp')
  with pytest.raises(ValueError, match=r"Unknown model config field\(s\) \['hiden_dim'\]"):
    make(hiden_dim=3)
  with pytest.raises(ValueError, match=r"Unknown option\(s\) \['units'\] for scorer 'additive'"):
    make(scorer_options={'units': 3})
  with pytest.raises(ValueError, match='Unknown decoder_cell'):
    make(decoder_cell='rnn')


@pytest.mark.parametrize('encoder,decoder,scorer', [
    pytest.param('bigru', 'bahdanau', 'additive', marks=pytest.mark.slow),
    pytest.param('transformer', 'luong', 'dot', marks=pytest.mark.slow)])
def test_bfloat16_mixed_precision_keeps_float32_params_weights_and_logits(encoder, decoder, scorer):
  model32, model16 = make(encoder, decoder, scorer), make(encoder, decoder, scorer, dtype='bfloat16')
  variables = model32.init(jax.random.key(0), SOURCE, TARGET_IN)
  shapes16 = jax.tree.map(lambda x: (x.shape, x.dtype), model16.init(jax.random.key(0), SOURCE, TARGET_IN))
  assert shapes16 == jax.tree.map(lambda x: (x.shape, x.dtype), variables)     # float32 master weights
  logits32, weights32 = model32.apply(variables, SOURCE, TARGET_IN)
  logits16, weights16 = model16.apply(variables, SOURCE, TARGET_IN)
  assert logits16.dtype == weights16.dtype == jnp.float32
  np.testing.assert_allclose(logits16, logits32, atol=5e-2)
  np.testing.assert_allclose(weights16, weights32, atol=1e-2)
  assert not np.array_equal(logits16, logits32)          # it did compute in bfloat16
  grads = jax.grad(lambda p: model16.apply({'params': p}, SOURCE, TARGET_IN)[0].sum())(variables['params'])
  assert all(g.dtype == jnp.float32 and np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match='Unknown dtype .float16.. Valid dtypes: float32, bfloat16'):
    make(dtype='float16')


def _coverage_scorer():
  """A stateful scorer that exists only in this test: q . k_j minus a learned multiple of the attention j got so far."""
  def init(rng, query_dim, key_dim):
    del rng, query_dim, key_dim
    return {'penalty': jnp.asarray(2.0, jnp.float32)}

  def score(params, query, keys, *, coverage):
    return keys @ query - params['penalty'] * coverage

  coverage = scoring.DecoderState(init=lambda mask: jnp.zeros(mask.shape, jnp.float32),
                                  update=lambda previous, weights: previous + weights)
  return scoring.Scorer('coverage', init, lambda params, keys: keys, score, state={'coverage': coverage},
                        equal_dims=True)


@pytest.mark.parametrize('decoder', ['bahdanau', 'luong'])
def test_a_new_stateful_scorer_needs_only_its_registry_entry(monkeypatch, decoder):
  monkeypatch.setitem(scoring.SCORERS, 'coverage', _coverage_scorer())
  model = make(decoder=decoder, scorer='coverage', input_feeding=False)
  variables = model.init(jax.random.key(0), SOURCE, TARGET_IN)
  assert variables['params']['cell']['attention']['scorer'].keys() == {'penalty'}
  logits, weights = model.apply(variables, SOURCE, TARGET_IN)
  step_logits, step_weights = stepwise(model, variables, SOURCE, TARGET_IN)
  np.testing.assert_allclose(logits, step_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(weights, step_weights, rtol=1e-5, atol=1e-5)
  memory = model.apply(variables, SOURCE, method=Seq2Seq.encode)
  carry = model.apply(variables, memory, method=Seq2Seq.initial_state)
  total = 0.0
  for t in range(T_LEN):   # the decoder carries the declared state: here the running sum of the weights
    carry, _, w_t = model.apply(variables, carry, TARGET_IN[:, t], memory, method=Seq2Seq.decode_step)
    total = total + w_t
  np.testing.assert_allclose(carry['scorer_state']['coverage'], total, rtol=1e-6)
