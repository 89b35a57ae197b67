"""Every registered scorer against an independent numpy reference, plus its API contract and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attention_jax import attention
from attention_jax import scoring

Q_DIM, K_DIM, S, H = 6, 5, 7, 4


def _np(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def ref_dot(p, q, k, **_):
  return k @ q


def ref_scaled_dot(p, q, k, **_):
  return k @ q / np.sqrt(k.shape[-1])


def ref_general(p, q, k, **_):
  return np.array([q @ p['W'] @ k[j] for j in range(k.shape[0])])


def ref_additive(p, q, k, **_):
  v = p['v']
  if 'g' in p:
    v = p['g'] * v / np.sqrt(np.sum(v ** 2))
  b = p.get('b', 0.0)
  return np.array([v @ np.tanh(p['W_q'].T @ q + p['W_k'].T @ k[j] + b) for j in range(k.shape[0])])


def ref_concat(p, q, k, **_):
  return np.array([p['v'] @ np.tanh(np.concatenate([q, k[j]]) @ p['W']) for j in range(k.shape[0])])


def ref_cosine(p, q, k, **_):
  scale = min(np.exp(p['log_scale']), 100.0)
  return np.array([scale * (q @ k[j]) / (np.linalg.norm(q) * np.linalg.norm(k[j])) for j in range(k.shape[0])])


def ref_location(p, q, k, **_):
  return (q @ p['W_a'] + p['b_a'])[: k.shape[0]]


def ref_location_aware(p, q, k, prev_weights):
  width, channels = p['F'].shape
  half = width // 2
  padded = np.concatenate([np.zeros(half), prev_weights, np.zeros(half)])
  feats = np.array([[sum(padded[j + i] * p['F'][i, c] for i in range(width)) for c in range(channels)]
                    for j in range(k.shape[0])])
  return np.array([p['v'] @ np.tanh(p['W_q'].T @ q + p['W_k'].T @ k[j] + p['U'].T @ feats[j] + p['b'])
                   for j in range(k.shape[0])])


def ref_coverage(p, q, k, coverage):
  return np.array([p['v'] @ np.tanh(p['W_q'].T @ q + p['W_k'].T @ k[j] + p['w_c'] * coverage[j] + p['b'])
                   for j in range(k.shape[0])])


# (scorer name, init options, numpy reference). Every registered scorer must appear here.
CASES = [
    ('dot', {}, ref_dot),
    ('scaled_dot', {}, ref_scaled_dot),
    ('general', {}, ref_general),
    ('additive', {'hidden_dim': H}, ref_additive),
    ('additive', {'hidden_dim': H, 'use_bias': True}, ref_additive),
    ('additive', {'hidden_dim': H, 'normalize': True}, ref_additive),
    ('concat', {'hidden_dim': H}, ref_concat),
    ('cosine', {'init_scale': 3.0}, ref_cosine),
    ('location', {'max_source_length': S + 3}, ref_location),
    ('location_aware', {'hidden_dim': H, 'num_filters': 3, 'kernel_size': 3}, ref_location_aware),
    ('coverage', {'hidden_dim': H}, ref_coverage),
]
CASE_IDS = [f'{n}-{"-".join(f"{k}={v}" for k, v in o.items())}' for n, o, _ in CASES]


def dims(name):
  return (K_DIM, K_DIM) if scoring.get(name).equal_dims else (Q_DIM, K_DIM)


def make_inputs(name, options, seed=0, batch=()):
  """Random params (perturbed away from their zero inits), query, keys and scorer state."""
  q_dim, k_dim = dims(name)
  rng = np.random.default_rng(seed)
  params = scoring.init(name, jax.random.key(seed), q_dim, k_dim, **options)
  params = {k: jnp.asarray(np.asarray(v) + 0.1 * rng.standard_normal(np.shape(v)), jnp.float32)
            for k, v in params.items()}
  query = jnp.asarray(rng.standard_normal((*batch, q_dim)), jnp.float32)
  keys = jnp.asarray(rng.standard_normal((*batch, S, k_dim)), jnp.float32)
  state = {}
  if 'prev_weights' in scoring.get(name).state_names:
    state['prev_weights'] = jnp.asarray(rng.dirichlet(np.ones(S), size=batch or None), jnp.float32)
  if 'coverage' in scoring.get(name).state_names:     # the sum of a few steps' weights
    state['coverage'] = jnp.asarray(rng.dirichlet(np.ones(S), size=(3, *batch)).sum(0), jnp.float32)
  return params, query, keys, state


def test_every_registered_scorer_has_a_reference():
  assert {name for name, _, _ in CASES} == set(scoring.names())


@pytest.mark.parametrize('name,options,reference', CASES, ids=CASE_IDS)
def test_scorer_matches_numpy_reference(name, options, reference):
  params, query, keys, state = make_inputs(name, options)
  got = scoring.get(name)(params, query, keys, **state)
  want = reference(_np(params), np.asarray(query, np.float64), np.asarray(keys, np.float64),
                   **{k: np.asarray(v, np.float64) for k, v in state.items()})
  assert got.shape == (S,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name,options,reference', CASES, ids=CASE_IDS)
def test_prepared_keys_split_equals_direct_scoring(name, options, reference):
  del reference
  scorer = scoring.get(name)
  params, query, keys, state = make_inputs(name, options)
  cache = scorer.prepare_keys(params, keys)
  np.testing.assert_array_equal(scorer.score_prepared(params, query, cache, **state),
                                scorer(params, query, keys, **state))


@pytest.mark.parametrize('name,options,reference', CASES, ids=CASE_IDS)
def test_scorer_gradients_match_finite_differences(name, options, reference):
  del reference
  params, query, keys, state = make_inputs(name, options)
  scorer = scoring.get(name)
  with jax.enable_x64(True):
    to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
    fn = lambda p, q, k: scorer(p, q, k, **to64(state))
    check_grads(fn, (to64(params), to64(query), to64(keys)), order=2, modes=['rev'], atol=1e-5, rtol=1e-5)


def test_dot_scores_equal_keras_parameter_free_dot_form():
  # Keras Attention(score_mode="dot", use_scale=False) scores are q . k: same numbers as ours.
  q = jnp.array([1.0, -2.0, 0.5])
  k = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 2.0, 2.0]])
  np.testing.assert_allclose(scoring.get('dot')({}, q, k), [1.0, -2.0, -1.0])
  np.testing.assert_allclose(scoring.get('scaled_dot')({}, q, k), np.array([1.0, -2.0, -1.0]) / np.sqrt(3))


def test_concat_is_additive_with_split_weight():
  params = scoring.init('concat', jax.random.key(1), Q_DIM, K_DIM, hidden_dim=H)
  as_additive = {'W_q': params['W'][:Q_DIM], 'W_k': params['W'][Q_DIM:], 'v': params['v']}
  _, query, keys, _ = make_inputs('concat', {'hidden_dim': H}, seed=3)
  np.testing.assert_allclose(scoring.get('concat')(params, query, keys),
                             scoring.get('additive')(as_additive, query, keys), rtol=1e-6)


def test_documented_parameter_shapes():
  shapes = lambda name, **o: jax.tree.map(jnp.shape, scoring.init(name, jax.random.key(0), 3, 5, **o))
  assert shapes('general') == {'W': (3, 5)}
  assert shapes('additive', hidden_dim=7) == {'W_q': (3, 7), 'W_k': (5, 7), 'v': (7,)}
  assert shapes('additive', hidden_dim=7, normalize=True) == {'W_q': (3, 7), 'W_k': (5, 7), 'v': (7,), 'b': (7,),
                                                               'g': ()}
  assert shapes('concat', hidden_dim=7) == {'W': (8, 7), 'v': (7,)}
  assert shapes('location', max_source_length=9) == {'W_a': (3, 9), 'b_a': (9,)}
  assert shapes('location_aware', hidden_dim=7, num_filters=2, kernel_size=3) == {
      'W_q': (3, 7), 'W_k': (5, 7), 'F': (3, 2), 'U': (2, 7), 'b': (7,), 'v': (7,)}
  assert jax.tree.map(jnp.shape, scoring.init('cosine', jax.random.key(0), 4, 4)) == {'log_scale': ()}
  assert scoring.init('dot', jax.random.key(0), 4, 4) == {}


def test_cosine_scale_stays_positive_and_bounded():
  q, k = jnp.ones(3), jnp.ones((2, 3))
  for log_scale, want in [(-50.0, np.exp(-50.0)), (0.0, 1.0), (50.0, 100.0)]:
    got = scoring.get('cosine')({'log_scale': jnp.asarray(log_scale)}, q, k)
    np.testing.assert_allclose(got, [want, want], rtol=1e-5)


def test_location_features_are_a_centred_cross_correlation():
  filters = jnp.array([[1.0], [10.0], [100.0]])      # K=3, C=1
  prev = jnp.array([1.0, 2.0, 3.0, 4.0])
  # f[j] = prev[j-1]*1 + prev[j]*10 + prev[j+1]*100, zero outside.
  np.testing.assert_allclose(scoring.location_features(filters, prev)[:, 0], [210.0, 321.0, 432.0, 43.0])


# ---- errors -------------------------------------------------------------------------------------------


def test_unknown_scorer_lists_valid_names():
  with pytest.raises(ValueError, match='Unknown scorer .*bahdanau.*Valid scorers: additive, concat, cosine, coverage, dot'):
    scoring.get('bahdanau')
  with pytest.raises(ValueError, match='Valid scorers'):
    scoring.init('nope', jax.random.key(0), 2, 2)


def test_unknown_option_lists_valid_options():
  with pytest.raises(ValueError, match=r"Unknown option\(s\) \['hiden_dim'\].*Valid options: hidden_dim, normalize"):
    scoring.init('additive', jax.random.key(0), 2, 2, hiden_dim=3)


def test_mismatched_dims_name_the_shapes():
  params = scoring.init('general', jax.random.key(0), 4, 3)
  with pytest.raises(ValueError, match=r'keys has shape \(5, 2\).*general W of shape \(4, 3\)'):
    scoring.get('general')(params, jnp.ones(4), jnp.ones((5, 2)))
  with pytest.raises(ValueError, match=r'query has shape \(6,\).*\(4, 3\)'):
    scoring.get('general')(params, jnp.ones(6), jnp.ones((5, 3)))
  with pytest.raises(ValueError, match='query_dim == key_dim.*query_dim=4, key_dim=3'):
    scoring.init('dot', jax.random.key(0), 4, 3)
  with pytest.raises(ValueError, match=r'query has shape \(4,\).*keys of shape \(5, 3\)'):
    scoring.get('dot')({}, jnp.ones(4), jnp.ones((5, 3)))
  with pytest.raises(ValueError, match=r'query must have shape \[d_q\].*\(2, 3\)'):
    scoring.get('dot')({}, jnp.ones((2, 3)), jnp.ones((5, 3)))


def test_location_scorer_needs_and_enforces_max_length():
  with pytest.raises(ValueError, match='needs max_source_length'):
    scoring.init('location', jax.random.key(0), 4, 4)
  params = scoring.init('location', jax.random.key(0), 4, 4, max_source_length=3)
  with pytest.raises(ValueError, match='at most 3 source positions.*5 positions'):
    scoring.get('location')(params, jnp.ones(4), jnp.ones((5, 4)))


def test_stateful_scorer_requires_its_state():
  params, query, keys, _ = make_inputs('location_aware', {'hidden_dim': H})
  with pytest.raises(TypeError, match='prev_weights'):
    scoring.get('location_aware')(params, query, keys)
  with pytest.raises(ValueError, match=r"takes prev_weights; missing \['prev_weights'\]"):
    attention.attend('location_aware', params, query, keys, keys)
  with pytest.raises(ValueError, match=r'prev_weights must have shape \[S\] = \(7,\).*\(6,\)'):
    scoring.get('location_aware')(params, query, keys, prev_weights=jnp.ones(6))


def test_scorers_are_jittable_by_name():
  params, query, keys, _ = make_inputs('additive', {'hidden_dim': H})
  jitted = jax.jit(functools.partial(scoring.get('additive')))
  np.testing.assert_allclose(jitted(params, query, keys), scoring.get('additive')(params, query, keys), rtol=1e-6)


def test_declared_requirements():
  for name in scoring.names():
    scorer = scoring.get(name)
    assert scorer.source_length_option in (None, *scorer.options), name
    assert scorer.state_names == tuple(scorer.state)
  assert scoring.get('location').source_length_option == 'max_source_length'
  assert scoring.get('location_aware').state_names == ('prev_weights',)
  assert scoring.get('coverage').state_names == ('coverage',)
  np.testing.assert_array_equal(scoring.COVERAGE.init(jnp.ones((2, 3), bool)), np.zeros((2, 3)))
  np.testing.assert_allclose(scoring.COVERAGE.update(jnp.full(3, 0.5), jnp.array([0.2, 0.3, 0.5])), [0.7, 0.8, 1.0])
  assert scoring.with_source_length('location', {}, 9) == {'max_source_length': 9}
  assert scoring.with_source_length('location', {'max_source_length': 4}, 9) == {'max_source_length': 4}
  assert scoring.with_source_length('additive', {'hidden_dim': 3}, 9) == {'hidden_dim': 3}
  mask = jnp.array([[True, True, False, False], [False, False, False, False]])
  np.testing.assert_array_equal(scoring.PREVIOUS_WEIGHTS.init(mask), [[0.5, 0.5, 0.0, 0.0], [0.0] * 4])
  np.testing.assert_array_equal(scoring.PREVIOUS_WEIGHTS.update(jnp.zeros(4), jnp.ones(4)), jnp.ones(4))
