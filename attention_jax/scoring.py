"""Attention scoring functions: one query against every key of one example.

Every scorer is a pure function written for ONE example and ONE query:

    score(params, query, keys, **state) -> scores
        query  [d_q]      the model's current (or previous) state
        keys   [S, d_k]   encoder hidden states
        scores [S]        unnormalised relevance of each key, float32 for low-precision inputs too

Batches and query positions are handled with `jax.vmap` (see `attention_jax.attention`).

The key-side work of a parameterised scorer (e.g. `keys @ W_k` for additive) does not depend on the query,
so it is split out and can be done once per source sequence and reused at every decoding step:

    key_cache = scorer.prepare_keys(params, keys)              # once per source sequence
    scores    = scorer.score_prepared(params, query, key_cache)  # every decoding step

`scorer(params, query, keys)` is exactly `score_prepared(params, query, prepare_keys(params, keys))`.

Scorers are chosen by name through one registry, `SCORERS` below (the functions live in
`attention_jax.score_functions`):

    scorer = scoring.get("additive")
    params = scoring.init("additive", rng, query_dim=8, key_dim=6, hidden_dim=16)
    scores = scorer(params, query, keys)            # [S]

Registered scorers, their parameters and where they differ from well-known libraries:

| name           | formula (e_j for key k_j)                         | params (shapes)                               |
|----------------|---------------------------------------------------|-----------------------------------------------|
| dot            | q . k_j                                           | none (d_q must equal d_k)                     |
| scaled_dot     | q . k_j / sqrt(d_k)                               | none (d_q must equal d_k)                     |
| general        | q^T W k_j                                         | W [d_q, d_k]                                  |
| additive       | v^T tanh(W_q q + W_k k_j [+ b])                   | W_q [d_q, H], W_k [d_k, H], v [H] (+ b [H])   |
|  (normalize)   | (g v / ||v||)^T tanh(W_q q + W_k k_j + b)         | + g [] , b [H]                                |
| concat         | v^T tanh(W [q; k_j])                              | W [d_q + d_k, H], v [H]                       |
| cosine         | s * cos(q, k_j), s = exp(log_scale) <= 100        | log_scale []                                  |
| location       | (W_a q + b_a)[j] (the query alone)                | W_a [d_q, L], b_a [L]; needs S <= L           |
| location_aware | v^T tanh(W_q q + W_k k_j + U f_j + b),            | W_q [d_q,H], W_k [d_k,H], F [K,C], U [C,H],   |
|                |   f = F * prev_weights (1-D convolution)          | b [H], v [H]; state: prev_weights [S]         |
| coverage       | v^T tanh(W_q q + W_k k_j + w_c c_j + b),          | W_q [d_q, H], W_k [d_k, H], w_c [H], b [H],   |
|                |   c = sum of the previous steps' weights          | v [H]; state: coverage [S]                    |

What a scorer needs from the model around it is declared in its `Scorer` record, and models read these
declarations instead of special-casing names (a new scorer, stateful or not, needs only its functions in
`attention_jax.score_functions` and its entry in `SCORERS` here):

  state                  {name: DecoderState}: the per-example state the scorer takes as keyword arguments
                         (`state_names` lists the names). A decoder carries each entry from step to step:
                         `DecoderState.init(mask [B, S]) -> [B, S]` before the first step, then
                         `DecoderState.update(previous [B, S], weights [B, S]) -> [B, S]` after every step.
                         location_aware: {'prev_weights': PREVIOUS_WEIGHTS} (the previous step's attention
                         weights, uniform over the real source positions at the first step); coverage:
                         {'coverage': COVERAGE} (the sum of all previous steps' weights, zero at the first step,
                         Tu et al. 2016 / See et al. 2017: the current step is not in it). Single-step users
                         (attention pooling) pass `init(mask)`. Stateful scorers cannot run per head.
  source_length_option   the init option that must be set to the number of source positions, or None.
                         location: 'max_source_length'; models fill it from their maximum source length with
                         `with_source_length` unless the configuration set it.
  equal_dims             True when the scorer needs d_q == d_k (dot, scaled_dot, cosine); decoders then project
                         the keys to the query size.
  options                the keyword options of `init`, with their defaults.
  hidden_size            `hidden_size(params) -> H` for the scorers that form an [S, H] tanh hidden layer for
                         every query (additive, concat, location_aware, coverage), else None. With T query
                         positions that layer is [T, S, H] per example; `memory_efficient` and the `Attention`
                         module read it to process long query sequences in chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from attention_jax import score_functions as fns
from attention_jax.score_functions import location_features  # noqa: F401  (public: location_aware's features)

Array = jax.Array
Params = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class DecoderState:
  """One keyword state of a scorer, carried by a decoder from step to step.

  Attributes:
    init: `init(mask [B, S] bool) -> [B, S]`, the value before the first step (the decoders' own states may be
      per example, [B]: local_m's step counter).
    update: `update(previous, weights [B, S]) -> previous's shape`, the value for the next step from this step's
      attention weights.
  """

  init: Callable[[Array], Array]
  update: Callable[[Array, Array], Array]


def uniform_over_mask(mask_BxS: Array) -> Array:
  """[B, S] bool -> [B, S] float32, 1 / (number of True) at the True positions, 0 elsewhere."""
  return mask_BxS.astype(jnp.float32) / jnp.maximum(jnp.sum(mask_BxS, axis=-1, keepdims=True), 1)


# The previous step's attention weights; they start uniform over the real source tokens (as ESPnet's AttLoc).
PREVIOUS_WEIGHTS = DecoderState(init=uniform_over_mask, update=lambda previous, weights: weights)


# The attention paid so far: zero before the first step, then the running sum of the weights of the steps before.
COVERAGE = DecoderState(init=lambda mask_BxS: jnp.zeros(mask_BxS.shape, jnp.float32),
                        update=lambda previous, weights: previous + weights)


@dataclasses.dataclass(frozen=True)
class Scorer:
  """A registered scoring function, its parameter initialiser and what it needs from the model.

  Calling the object scores one query against all keys: `scorer(params, query, keys, **state) -> scores [S]`.

  Attributes:
    name: registry name.
    init_fn: `init_fn(rng, query_dim, key_dim, **options) -> params`.
    prepare_keys: `prepare_keys(params, keys [S, d_k]) -> key_cache` (query-independent work).
    score_prepared: `score_prepared(params, query [d_q], key_cache, **state) -> scores [S]`.
    state: {keyword: DecoderState} the scorer consumes (e.g. {'prev_weights': PREVIOUS_WEIGHTS}).
    options: the keyword options `init_fn` accepts, with their defaults.
    equal_dims: True when the scorer needs query_dim == key_dim.
    source_length_option: the option of `init_fn` that takes the number of source positions, or None.
    hidden_size: `hidden_size(params) -> H`, the width of the [S, H] hidden layer the scorer forms for each query,
      or None for scorers without one.
  """

  name: str
  init_fn: Callable[..., Params]
  prepare_keys: Callable[[Params, Array], Any]
  score_prepared: Callable[..., Array]
  state: Mapping[str, DecoderState] = dataclasses.field(default_factory=dict)
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  equal_dims: bool = False
  source_length_option: str | None = None
  hidden_size: Callable[[Params], int] | None = None

  @property
  def state_names(self) -> tuple[str, ...]:
    """The names of the keyword state the scorer requires (e.g. ('prev_weights',))."""
    return tuple(self.state)

  def __call__(self, params: Params, query: Array, keys: Array, **state: Array) -> Array:
    return self.score_prepared(params, query, self.prepare_keys(params, keys), **state)


SCORERS: dict[str, Scorer] = {
    s.name: s for s in (
        Scorer('dot', fns.init_parameter_free, fns.prepare_identity, fns.dot_prepared, equal_dims=True),
        Scorer('scaled_dot', fns.init_parameter_free, fns.prepare_identity, fns.scaled_dot_prepared,
               equal_dims=True),
        Scorer('general', fns.init_general, fns.general_prepare, fns.general_prepared),
        Scorer('additive', fns.init_additive, fns.additive_prepare, fns.additive_prepared,
               options={'hidden_dim': 128, 'use_bias': False, 'normalize': False}, hidden_size=fns.tanh_hidden_size),
        Scorer('concat', fns.init_concat, fns.concat_prepare, fns.concat_prepared, options={'hidden_dim': 128},
               hidden_size=fns.tanh_hidden_size),
        Scorer('cosine', fns.init_cosine, fns.cosine_prepare, fns.cosine_prepared, options={'init_scale': 10.0},
               equal_dims=True),
        Scorer('location', fns.init_location, fns.location_prepare, fns.location_prepared,
               options={'max_source_length': None}, source_length_option='max_source_length'),
        Scorer('location_aware', fns.init_location_aware, fns.additive_prepare, fns.location_aware_prepared,
               state={'prev_weights': PREVIOUS_WEIGHTS},
               options={'hidden_dim': 128, 'num_filters': 8, 'kernel_size': 5}, hidden_size=fns.tanh_hidden_size),
        Scorer('coverage', fns.init_coverage, fns.additive_prepare, fns.coverage_prepared,
               state={'coverage': COVERAGE}, options={'hidden_dim': 128}, hidden_size=fns.tanh_hidden_size),
    )
}


def names() -> tuple[str, ...]:
  """The registered scorer names, sorted."""
  return tuple(sorted(SCORERS))


def get(name: str) -> Scorer:
  """Returns the registered scorer `name`: a pure callable `score(params, query [d_q], keys [S, d_k]) -> [S]`.

  Raises:
    ValueError: if `name` is not registered; the message lists the valid names.
  """
  if isinstance(name, Scorer):
    return name
  try:
    return SCORERS[name]
  except (KeyError, TypeError):
    raise ValueError(f'Unknown scorer {name!r}. Valid scorers: {", ".join(names())}.') from None


def check_options(name: str, options: Mapping[str, Any]) -> None:
  """Raises ValueError naming the valid options if `options` has one that scorer `name` does not accept."""
  scorer = get(name)
  unknown = sorted(set(options) - set(scorer.options))
  if unknown:
    valid = ', '.join(sorted(scorer.options)) or 'none'
    raise ValueError(f'Unknown option(s) {unknown} for scorer {scorer.name!r}. Valid options: {valid}.')


def with_source_length(name: str, options: Mapping[str, Any], source_length: int) -> dict[str, Any]:
  """`options` with the scorer's `source_length_option` (if it declares one) defaulting to `source_length`."""
  options = dict(options)
  option = get(name).source_length_option
  if option is not None:
    options.setdefault(option, int(source_length))
  return options


def init(name: str, rng: Array, query_dim: int, key_dim: int, **options: Any) -> Params:
  """Initialises the parameters of scorer `name` (float32).

  Args:
    name: a registered scorer name (see `names()`).
    rng: a PRNG key.
    query_dim: d_q, size of one query vector.
    key_dim: d_k, size of one key vector.
    **options: scorer-specific options (see `get(name).options`), e.g. `hidden_dim` for additive/concat.

  Returns:
    A dict of arrays; keys and shapes are listed in this module's docstring (e.g. general -> {'W': [d_q, d_k]}).

  Raises:
    ValueError: unknown scorer, unknown option (the message lists the valid ones) or incompatible dims.
  """
  check_options(name, options)
  return get(name).init_fn(rng, int(query_dim), int(key_dim), **options)
