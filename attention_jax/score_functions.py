"""The registered scorers' pure functions: parameter initialisers and per-example scoring, one section each.

Each scorer is three functions, for ONE example and ONE query (see `attention_jax.scoring` for the contract and
the registry that names them):

    init(rng, query_dim, key_dim, **options) -> params            float32 arrays
    prepare(params, keys [S, d_k]) -> key_cache                    the query-independent work
    prepared(params, query [d_q], key_cache, **state) -> [S]       float32 scores

Nothing here is chosen by name; `attention_jax.scoring.SCORERS` is the only place that does.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Array]

# Upper bound of the cosine scorer's learned scale, as in Swin Transformer V2 (temperature tau >= 0.01).
MAX_COSINE_SCALE = 100.0


# ----------------------------------------------------------------------------------------------------------
# Small helpers shared by the scorers.


def _lecun_normal(rng: Array, shape: tuple[int, ...], fan_in: int) -> Array:
  return jax.random.normal(rng, shape, jnp.float32) / math.sqrt(fan_in)


def _uniform_scaled(rng: Array, shape: tuple[int, ...], fan_in: int) -> Array:
  # Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), the nn.Linear default; keeps v^T tanh(.) at unit scale.
  bound = 1.0 / math.sqrt(fan_in)
  return jax.random.uniform(rng, shape, jnp.float32, -bound, bound)


def _check_last_dim(what: str, array: Array, expected: int, param_desc: str) -> None:
  if array.shape[-1] != expected:
    raise ValueError(
        f'{what} has shape {tuple(array.shape)}, but its last dimension must be {expected} to match {param_desc}.')


def _check_keys(keys: Array) -> None:
  if keys.ndim != 2:
    raise ValueError(f'keys must have shape [S, d_k] (one example); got shape {tuple(keys.shape)}. '
                     'Use attention_jax.attention.batched_attend (or jax.vmap) for batches.')


def _check_query(query: Array) -> None:
  if query.ndim != 1:
    raise ValueError(f'query must have shape [d_q] (one query of one example); got shape {tuple(query.shape)}. '
                     'Use attention_jax.attention.batched_attend (or jax.vmap) for batches and query positions.')


def _f32(x: Array) -> Array:
  """Scores are computed in at least float32 (bf16/fp16 dot products lose the ranking); float64 stays float64."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


# ----------------------------------------------------------------------------------------------------------
# dot and scaled_dot (Luong 2015; Vaswani 2017). Parameter-free.


def init_parameter_free(rng: Array, query_dim: int, key_dim: int) -> Params:
  """No parameters; dot products need d_q == d_k."""
  del rng
  if query_dim != key_dim:
    raise ValueError(f'dot-product scorers need query_dim == key_dim; got query_dim={query_dim}, '
                     f'key_dim={key_dim}. Use "general" (q^T W k) or "additive" for different sizes.')
  return {}


def prepare_identity(params: Params, keys: Array) -> Array:
  del params
  _check_keys(keys)
  return keys


def dot_prepared(params: Params, query: Array, keys: Array) -> Array:
  """e_j = q . k_j. Matches OpenNMT-py `dot` and Keras `Attention(score_mode='dot', use_scale=False)`."""
  del params
  _check_query(query)
  _check_last_dim('query', query, keys.shape[-1], f'keys of shape {tuple(keys.shape)} (dot needs d_q == d_k)')
  return jnp.einsum('d,sd->s', _f32(query), _f32(keys))


def scaled_dot_prepared(params: Params, query: Array, keys: Array) -> Array:
  """e_j = q . k_j / sqrt(d_k). Matches `jax.nn.dot_product_attention`'s default scale."""
  return dot_prepared(params, query, keys) / math.sqrt(keys.shape[-1])


# ----------------------------------------------------------------------------------------------------------
# general (Luong 2015): q^T W k_j.


def init_general(rng: Array, query_dim: int, key_dim: int) -> Params:
  return {'W': _lecun_normal(rng, (query_dim, key_dim), key_dim)}


def general_prepare(params: Params, keys: Array) -> Array:
  """Projects keys into query space once: (W k_j) for all j, [S, d_q]."""
  _check_keys(keys)
  w = params['W']
  _check_last_dim('keys', keys, w.shape[1], f'general W of shape {tuple(w.shape)} ([d_q, d_k])')
  return jnp.einsum('qk,sk->sq', _f32(w), _f32(keys))


def general_prepared(params: Params, query: Array, projected_keys: Array) -> Array:
  """e_j = q^T W k_j.

  TF-Addons `LuongAttention` computes the same product (memory projected by a bias-free W_m, times an optional
  scalar g we do not have); OpenNMT-py `general` projects the query instead, (W_in q)^T k_j, which is the same
  function with W_in = W^T.
  """
  _check_query(query)
  _check_last_dim('query', query, params['W'].shape[0], f'general W of shape {tuple(params["W"].shape)} ([d_q, d_k])')
  return jnp.einsum('q,sq->s', _f32(query), projected_keys)


# ----------------------------------------------------------------------------------------------------------
# additive (Bahdanau 2015): v^T tanh(W_q q + W_k k_j [+ b]), with TF-Addons' weight-normalised option.


def init_additive(rng: Array, query_dim: int, key_dim: int, hidden_dim: int = 128, use_bias: bool = False,
                   normalize: bool = False) -> Params:
  kq, kk, kv = jax.random.split(rng, 3)
  params = {
      'W_q': _lecun_normal(kq, (query_dim, hidden_dim), query_dim),
      'W_k': _lecun_normal(kk, (key_dim, hidden_dim), key_dim),
      'v': _uniform_scaled(kv, (hidden_dim,), hidden_dim),
  }
  if use_bias or normalize:
    params['b'] = jnp.zeros((hidden_dim,), jnp.float32)
  if normalize:
    # TF-Addons BahdanauAttention(normalize=True): g initialised to sqrt(1 / units).
    params['g'] = jnp.asarray(math.sqrt(1.0 / hidden_dim), jnp.float32)
  return params


def additive_prepare(params: Params, keys: Array) -> Array:
  """W_k k_j (+ b) for all j, [S, H]: the query-independent half of the tanh argument (also location_aware's and
  coverage's, whose b is always present)."""
  _check_keys(keys)
  w_k = params['W_k']
  _check_last_dim('keys', keys, w_k.shape[0], f'W_k of shape {tuple(w_k.shape)} ([d_k, H])')
  projected = _f32(keys) @ _f32(w_k)
  if 'b' in params:
    projected = projected + params['b']
  return projected


def _output_vector(params: Params) -> Array:
  v = _f32(params['v'])
  if 'g' in params:
    v = params['g'] * v / jnp.linalg.norm(v)
  return v


def _project_query(params: Params, query: Array) -> Array:
  """W_q q, [H], after checking q [d_q] against W_q [d_q, H] (additive, location_aware, coverage)."""
  _check_query(query)
  w_q = params['W_q']
  _check_last_dim('query', query, w_q.shape[0], f'W_q of shape {tuple(w_q.shape)} ([d_q, H])')
  return _f32(query) @ _f32(w_q)


@jax.custom_vjp
def tanh_scores(key_part: Array, query_part: Array, v: Array) -> Array:
  """e_j = v^T tanh(key_part_j + query_part), the tanh-MLP scorers' common core: key_part [S, H], query_part
  [H] or [S, H], v [H] -> [S].

  Its backward pass recomputes the [S, H] hidden layer from the inputs instead of keeping it. Inside a decoder's
  scan, additive attention's inputs are the loop-invariant key part and an [H] query part, so no [T, S, H]
  residual is stacked at all, for the price of one more tanh; location_aware's and coverage's query parts are
  [S, H] at every step and are kept instead of the hidden layer (the same size).
  """
  return jnp.tanh(key_part + query_part) @ v


def _tanh_scores_fwd(key_part, query_part, v):
  return tanh_scores(key_part, query_part, v), (key_part, query_part, v)


def _tanh_scores_bwd(residuals, d_scores):
  key_part, query_part, v = residuals
  hidden = jnp.tanh(key_part + query_part)
  d_pre = d_scores[:, None] * v * (1.0 - hidden * hidden)      # [S, H]
  d_query = d_pre if query_part.ndim == 2 else jnp.sum(d_pre, axis=0)
  return d_pre, d_query, d_scores @ hidden


tanh_scores.defvjp(_tanh_scores_fwd, _tanh_scores_bwd)


def tanh_hidden_size(params: Params) -> int:
  """H, the width of the hidden layer of a tanh-MLP scorer (additive, concat, location_aware, coverage), from
  its output vector v [H]."""
  return int(params['v'].shape[-1])


def _check_per_position(name: str, value: Array, length: int) -> None:
  """Raises ValueError unless a scorer's state `name` has shape [S] = (length,) like the keys."""
  if value.shape != (length,):
    raise ValueError(f'{name} must have shape [S] = ({length},) to match the keys; got shape {tuple(value.shape)}.')


def additive_prepared(params: Params, query: Array, projected_keys: Array) -> Array:
  """e_j = v^T tanh(W_q q + W_k k_j [+ b]).

  With use_bias=False and normalize=False this is the paper's form and TF-Addons `BahdanauAttention`
  (both projections bias-free). use_bias=True adds one bias after the sum, which equals OpenNMT-py `mlp`
  (bias on the query projection only) and the PyTorch tutorial (biases on both Linear layers sum into one).
  normalize=True is TF-Addons `normalize=True`: v replaced by g v / ||v|| and a bias b.
  """
  return tanh_scores(projected_keys, _project_query(params, query), _output_vector(params))


# ----------------------------------------------------------------------------------------------------------
# concat (Luong 2015): v^T tanh(W [q; k_j]).


def init_concat(rng: Array, query_dim: int, key_dim: int, hidden_dim: int = 128) -> Params:
  kw, kv = jax.random.split(rng)
  return {
      'W': _lecun_normal(kw, (query_dim + key_dim, hidden_dim), query_dim + key_dim),
      'v': _uniform_scaled(kv, (hidden_dim,), hidden_dim),
  }


def _concat_split(params: Params, key_dim: int) -> tuple[Array, Array]:
  w = params['W']
  query_dim = w.shape[0] - key_dim
  return w[:query_dim], w[query_dim:]


def concat_prepare(params: Params, keys: Array) -> dict[str, Array]:
  """The key half of W [q; k_j] = W_top q + W_bottom k_j, for all j, [S, H]."""
  _check_keys(keys)
  w = params['W']
  if keys.shape[-1] >= w.shape[0]:
    raise ValueError(f'keys of shape {tuple(keys.shape)} do not fit concat W of shape {tuple(w.shape)} '
                     '([d_q + d_k, H]).')
  _, w_keys = _concat_split(params, keys.shape[-1])
  return {'projected_keys': _f32(keys) @ _f32(w_keys), 'key_dim': jnp.zeros((keys.shape[-1], 0))}


def concat_prepared(params: Params, query: Array, cache: dict[str, Array]) -> Array:
  """e_j = v^T tanh(W [q; k_j]): the additive function with W split into its query and key blocks."""
  _check_query(query)
  key_dim = cache['key_dim'].shape[0]
  w_query, _ = _concat_split(params, key_dim)
  _check_last_dim('query', query, w_query.shape[0],
                  f'concat W of shape {tuple(params["W"].shape)} with d_k={key_dim} ([d_q + d_k, H])')
  hidden = jnp.tanh(cache['projected_keys'] + _f32(query) @ _f32(w_query))
  return hidden @ _f32(params['v'])


# ----------------------------------------------------------------------------------------------------------
# cosine (Graves 2014 key strength; Swin V2's bounded learned temperature).


def init_cosine(rng: Array, query_dim: int, key_dim: int, init_scale: float = 10.0) -> Params:
  del rng
  if query_dim != key_dim:
    raise ValueError(f'cosine needs query_dim == key_dim; got query_dim={query_dim}, key_dim={key_dim}.')
  if not 0 < init_scale <= MAX_COSINE_SCALE:
    raise ValueError(f'cosine init_scale must be in (0, {MAX_COSINE_SCALE}]; got {init_scale}.')
  return {'log_scale': jnp.asarray(math.log(init_scale), jnp.float32)}


def _unit(x: Array, axis: int = -1) -> Array:
  # The epsilon keeps zero vectors (e.g. padding) finite with a finite gradient.
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + 1e-12)


def cosine_prepare(params: Params, keys: Array) -> Array:
  del params
  _check_keys(keys)
  return _unit(_f32(keys))


def cosine_prepared(params: Params, query: Array, unit_keys: Array) -> Array:
  """e_j = s cos(q, k_j), s = exp(min(log_scale, log 100)) > 0, learned."""
  _check_query(query)
  _check_last_dim('query', query, unit_keys.shape[-1], f'keys of shape {tuple(unit_keys.shape)} (cosine needs d_q == d_k)')
  scale = jnp.exp(jnp.minimum(params['log_scale'], math.log(MAX_COSINE_SCALE)))
  return scale * (unit_keys @ _unit(_f32(query)))


# ----------------------------------------------------------------------------------------------------------
# location (Luong 2015): scores from the query alone over source positions.


def init_location(rng: Array, query_dim: int, key_dim: int, max_source_length: int | None = None) -> Params:
  del key_dim
  if max_source_length is None or max_source_length <= 0:
    raise ValueError('the "location" scorer needs max_source_length (a positive int): it scores source positions '
                     f'0..max_source_length-1 from the query alone; got {max_source_length!r}.')
  return {
      'W_a': _lecun_normal(rng, (query_dim, max_source_length), query_dim),
      'b_a': jnp.zeros((max_source_length,), jnp.float32),
  }


def location_prepare(params: Params, keys: Array) -> Array:
  _check_keys(keys)
  max_len = params['W_a'].shape[1]
  if keys.shape[0] > max_len:
    raise ValueError(f'the "location" scorer was initialised for at most {max_len} source positions, but keys have '
                     f'shape {tuple(keys.shape)} ({keys.shape[0]} positions). Raise max_source_length.')
  # Only the source length matters; carry it as a zero-width array so the cache is a pytree.
  return jnp.zeros((keys.shape[0], 0), jnp.float32)


def location_prepared(params: Params, query: Array, positions: Array) -> Array:
  """e = (W_a q + b_a)[:S]. Luong's a_t = softmax(W_a h_t); the bias is ours (zero-initialised)."""
  _check_query(query)
  w = params['W_a']
  _check_last_dim('query', query, w.shape[0], f'W_a of shape {tuple(w.shape)} ([d_q, max_source_length])')
  return (_f32(query) @ _f32(w) + params['b_a'])[: positions.shape[0]]


# ----------------------------------------------------------------------------------------------------------
# location_aware (Chorowski 2015): additive plus a convolution of the previous weights.


def init_location_aware(rng: Array, query_dim: int, key_dim: int, hidden_dim: int = 128, num_filters: int = 8,
                         kernel_size: int = 5) -> Params:
  if kernel_size % 2 != 1:
    raise ValueError(f'location_aware kernel_size must be odd (centred "same" convolution); got {kernel_size}.')
  kq, kk, kf, ku, kv = jax.random.split(rng, 5)
  return {
      'W_q': _lecun_normal(kq, (query_dim, hidden_dim), query_dim),
      'W_k': _lecun_normal(kk, (key_dim, hidden_dim), key_dim),
      'F': _lecun_normal(kf, (kernel_size, num_filters), kernel_size),
      'U': _lecun_normal(ku, (num_filters, hidden_dim), num_filters),
      'b': jnp.zeros((hidden_dim,), jnp.float32),
      'v': _uniform_scaled(kv, (hidden_dim,), hidden_dim),
  }


def location_features(filters: Array, prev_weights: Array) -> Array:
  """f = F * a_prev: 'same'-padded 1-D cross-correlation of the previous weights with each filter.

  Args:
    filters: [K, C] (K odd).
    prev_weights: [S].

  Returns:
    [S, C] with f[j, c] = sum_i prev_weights[j + i - K // 2] * filters[i, c] (zero outside 0..S-1).
  """
  out = jax.lax.conv_general_dilated(
      _f32(prev_weights)[None, :, None], _f32(filters)[:, None, :], window_strides=(1,), padding='SAME',
      dimension_numbers=('NWC', 'WIO', 'NWC'))
  return out[0]


def location_aware_prepared(params: Params, query: Array, projected_keys: Array, *, prev_weights: Array) -> Array:
  """e_j = v^T tanh(W_q q + W_k k_j + U f_j + b), f = F * prev_weights (ESPnet `AttLoc` without its scaling);
  projected_keys = additive_prepare(params, keys)."""
  _check_per_position('location_aware prev_weights', prev_weights, projected_keys.shape[0])
  features = location_features(params['F'], prev_weights) @ _f32(params['U'])   # [S, H]
  return tanh_scores(projected_keys, features + _project_query(params, query), _f32(params['v']))


# --- coverage (Tu et al. 2016; See et al. 2017 eq. 11) ---------------------------------------------------------
def init_coverage(rng: Array, query_dim: int, key_dim: int, hidden_dim: int = 128) -> Params:
  kq, kk, kc, kv = jax.random.split(rng, 4)
  return {
      'W_q': _lecun_normal(kq, (query_dim, hidden_dim), query_dim),
      'W_k': _lecun_normal(kk, (key_dim, hidden_dim), key_dim),
      'w_c': _lecun_normal(kc, (hidden_dim,), 1),
      'b': jnp.zeros((hidden_dim,), jnp.float32),
      'v': _uniform_scaled(kv, (hidden_dim,), hidden_dim),
  }


def coverage_prepared(params: Params, query: Array, projected_keys: Array, *, coverage: Array) -> Array:
  """e_i = v^T tanh(W_q q + W_k k_i + w_c c_i + b), c_i = sum_{t' < t} a_{t', i} the attention paid to source
  position i before this step (See et al. 2017, eq. 11); projected_keys = additive_prepare(params, keys)."""
  _check_per_position('coverage', coverage, projected_keys.shape[0])
  query_part = _f32(coverage)[:, None] * _f32(params['w_c']) + _project_query(params, query)
  return tanh_scores(projected_keys, query_part, _f32(params['v']))
