"""Greedy and beam search: against a Python loop, exhaustive search, and teacher-forced attention."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import decoding
from attention_jax.models import Seq2Seq, build_model

SOURCE = jnp.array([[5, 6, 4, 2, 0], [4, 3, 2, 0, 0], [6, 6, 6, 5, 2]], jnp.int32)


def tiny_model(vocab, scorer='additive', decoder='bahdanau', eos_bias=0.0, seed=0):
  model = build_model(dict(encoder='bigru', decoder=decoder, scorer=scorer, embed_dim=8, hidden_dim=8),
                      source_vocab_size=7, target_vocab_size=vocab, max_source_length=5)
  params = model.init(jax.random.key(seed), SOURCE, SOURCE[:, :2])['params']
  # Sharper, seed-dependent output distributions; an EOS bias controls how long the best outputs are.
  out = params['cell']['output']
  out = {'kernel': out['kernel'] * 4.0, 'bias': out['bias'].at[decoding.EOS_ID].add(eos_bias)}
  params = {**params, 'cell': {**params['cell'], 'output': out}}
  return model, params


def teacher_forced(model, params, source, tokens):
  target_in = jnp.concatenate([jnp.full_like(tokens[:, :1], decoding.BOS_ID), tokens[:, :-1]], axis=1)
  return model.apply({'params': params}, source, target_in)


def test_greedy_equals_python_argmax_loop_and_reports_its_attention():
  model, params = tiny_model(vocab=8, eos_bias=-1.0)
  tokens, weights = decoding.greedy_decode(model, params, SOURCE, max_length=6)
  variables = {'params': params}
  memory = model.apply(variables, SOURCE, method=Seq2Seq.encode)
  carry = model.apply(variables, memory, method=Seq2Seq.initial_state)
  prev = np.full(3, decoding.BOS_ID)
  done = np.zeros(3, bool)
  for t in range(6):
    carry, logits, w = model.apply(variables, carry, jnp.asarray(prev), memory, method=Seq2Seq.decode_step)
    logits = np.asarray(logits).copy()
    logits[:, [decoding.PAD_ID, decoding.BOS_ID]] = -np.inf
    token = np.where(done, decoding.PAD_ID, logits.argmax(-1))
    np.testing.assert_array_equal(tokens[:, t], token)
    np.testing.assert_allclose(weights[:, t], np.where(done[:, None], 0.0, w), rtol=1e-5, atol=1e-6)
    done |= token == decoding.EOS_ID
    prev = token
  # The reported weights are those of teacher forcing on the chosen output.
  _, tf_weights = teacher_forced(model, params, SOURCE, tokens)
  alive = np.cumsum(np.asarray(tokens) == decoding.EOS_ID, axis=1) - (np.asarray(tokens) == decoding.EOS_ID) == 0
  np.testing.assert_allclose(np.where(alive[..., None], tf_weights, 0.0), weights, rtol=1e-5, atol=1e-6)


def exhaustive_ranking(model, params, source, max_length, alpha, vocab, beta=0.0):
  """Scores every finished output (content tokens then EOS, at most max_length long) by log P / lp + cp, cp the
  GNMT coverage penalty beta * sum_i log(min(sum_t a_t,i, 1)) of its teacher-forced attention (Wu et al. eq. 14).

  Returns:
    per example, [(output ids [max_length], score)] best first.
  """
  content = [t for t in range(vocab) if t not in (decoding.PAD_ID, decoding.BOS_ID, decoding.EOS_ID)]
  candidates = []
  for length in range(max_length):
    for body in itertools.product(content, repeat=length):
      candidates.append(list(body) + [decoding.EOS_ID] + [decoding.PAD_ID] * (max_length - length - 1))
  target = jnp.asarray(candidates, jnp.int32)
  best = []
  for b in range(source.shape[0]):
    src = jnp.repeat(source[b:b + 1], len(candidates), axis=0)
    log_p = np.asarray(decoding.sequence_log_prob(model, params, src, target))
    lengths = np.asarray((target != decoding.PAD_ID).sum(1))
    score = log_p / ((5.0 + lengths) / 6.0) ** alpha
    if beta:
      _, weights = teacher_forced(model, params, src, target)
      weights = np.where(np.asarray(target != decoding.PAD_ID)[..., None], np.asarray(weights, np.float64), 0.0)
      total = np.minimum(weights.sum(1), 1.0)                                          # [N, S]
      real = np.asarray(src != decoding.PAD_ID)
      score = score + beta * np.where(real, np.log(np.maximum(total, 1e-6)), 0.0).sum(-1)
    order = np.argsort(-score, kind='stable')
    best.append([(candidates[int(i)], float(score[i])) for i in order])
  return best


def exhaustive_best(model, params, source, max_length, alpha, vocab, beta=0.0):
  """Per example, the (output ids, score) with the best exhaustive score."""
  return [ranking[0] for ranking in exhaustive_ranking(model, params, source, max_length, alpha, vocab, beta)]


@pytest.mark.parametrize('alpha,beta,eos_bias,seed', [
    pytest.param(0.0, 0.0, 0.0, 0, marks=pytest.mark.slow), (0.6, 0.0, -4.0, 1),
    pytest.param(1.0, 0.0, -8.0, 2, marks=pytest.mark.slow), (0.6, 2.0, 2.0, 3)])
def test_beam_search_with_a_wide_beam_finds_the_exhaustive_optimum(alpha, beta, eos_bias, seed):
  vocab, max_length = 5, 3          # content tokens {3, 4}: 2 + 4 + 8 ... few enough to enumerate
  model, params = tiny_model(vocab, eos_bias=eos_bias, seed=seed)
  tokens, weights = decoding.beam_search(model, params, SOURCE, max_length=max_length, beam_size=8,
                                         length_penalty=alpha, coverage_penalty_weight=beta)
  best = exhaustive_best(model, params, SOURCE, max_length, alpha, vocab, beta)
  if beta:   # the penalty matters here: without it the optimum differs (a likely EOS ends outputs early)
    assert best != exhaustive_best(model, params, SOURCE, max_length, alpha, vocab)
  for b, (want, _) in enumerate(best):
    np.testing.assert_array_equal(tokens[b], want)
  _, tf_weights = teacher_forced(model, params, SOURCE, tokens)
  emitted = np.asarray(tokens) != decoding.PAD_ID
  np.testing.assert_allclose(weights, np.where(emitted[..., None], tf_weights, 0.0), rtol=1e-5, atol=1e-6)
  if alpha > 0:   # with a length penalty and an unlikely EOS, the optimum is longer than [EOS]
    assert any(sum(t != decoding.PAD_ID for t in want) > 1 for want, _ in best)


@pytest.mark.parametrize('alpha,beta,eos_bias,seed', [pytest.param(0.6, 0.0, -2.0, 5, marks=pytest.mark.slow),
                                                    (0.6, 2.0, 1.0, 6)])
def test_n_best_of_a_wide_beam_is_the_exhaustive_ranking(alpha, beta, eos_bias, seed):
  vocab, max_length, n = 5, 3, 5    # 7 finished outputs exist: a beam of 8 holds them all
  model, params = tiny_model(vocab, eos_bias=eos_bias, seed=seed)
  tokens, weights, scores, finished = decoding.beam_search_n_best(
      model, params, SOURCE, max_length=max_length, beam_size=8, n=n, length_penalty=alpha,
      coverage_penalty_weight=beta)
  assert tokens.shape == (3, n, max_length) and weights.shape == (3, n, max_length, 5) and scores.shape == (3, n)
  assert np.all(np.asarray(finished))
  for b, ranking in enumerate(exhaustive_ranking(model, params, SOURCE, max_length, alpha, vocab, beta)):
    np.testing.assert_allclose(scores[b], [score for _, score in ranking[:n]], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(tokens[b], [want for want, _ in ranking[:n]])
  # Hypothesis 0 is beam_search's; each hypothesis carries its own teacher-forced attention.
  best_tokens, best_weights = decoding.beam_search(model, params, SOURCE, max_length=max_length, beam_size=8,
                                                   length_penalty=alpha, coverage_penalty_weight=beta)
  np.testing.assert_array_equal(tokens[:, 0], best_tokens)
  np.testing.assert_array_equal(weights[:, 0], best_weights)
  for i in range(n):
    _, tf_weights = teacher_forced(model, params, SOURCE, tokens[:, i])
    emitted = np.asarray(tokens[:, i]) != decoding.PAD_ID
    np.testing.assert_allclose(weights[:, i], np.where(emitted[..., None], tf_weights, 0.0), rtol=1e-5, atol=1e-6)


def test_n_best_fills_with_alive_hypotheses_when_too_few_finished():
  # With EOS this unlikely, only the one-token output [EOS] finishes within 2 steps (it is among the 2K candidates
  # of the first step); the other places go to the best alive hypotheses, scored as if ending at T, best first.
  model, params = tiny_model(vocab=6, eos_bias=-30.0, seed=7)
  tokens, _, scores, finished = decoding.beam_search_n_best(model, params, SOURCE, max_length=2, beam_size=3, n=3)
  np.testing.assert_array_equal(finished, [[True, False, False]] * 3)
  np.testing.assert_array_equal(tokens[:, 0], [[decoding.EOS_ID, decoding.PAD_ID]] * 3)
  assert np.all(np.asarray(tokens[:, 1:]) != decoding.EOS_ID) and np.all(scores[:, 1] >= scores[:, 2])
  best, _ = decoding.beam_search(model, params, SOURCE, max_length=2, beam_size=3)
  np.testing.assert_array_equal(tokens[:, 0], best)
  with pytest.raises(ValueError, match='n=4 best hypotheses need 1 <= n <= beam_size=3'):
    decoding.beam_search_n_best(model, params, SOURCE, max_length=2, beam_size=3, n=4)


def test_beam_search_is_at_least_as_good_as_greedy_and_batch_independent():
  model, params = tiny_model(vocab=9, scorer='general', decoder='luong', eos_bias=-1.0, seed=4)
  beam, _ = decoding.beam_search(model, params, SOURCE, max_length=5, beam_size=4, length_penalty=0.0)
  greedy, _ = decoding.greedy_decode(model, params, SOURCE, max_length=5)
  finished = lambda tok: np.asarray((tok == decoding.EOS_ID).any(1))
  score = lambda tok: np.asarray(decoding.sequence_log_prob(model, params, SOURCE, tok))
  both = finished(beam) & finished(greedy)
  assert np.all(score(beam)[both] >= score(greedy)[both] - 1e-5)
  single, _ = decoding.beam_search(model, params, SOURCE[1:2], max_length=5, beam_size=4, length_penalty=0.0)
  np.testing.assert_array_equal(single[0], beam[1])


@pytest.mark.parametrize('scorer,decoder', [('additive', 'bahdanau'), ('location_aware', 'luong')])
def test_decode_is_greedy_or_beam_search_on_host(scorer, decoder):
  model, params = tiny_model(vocab=8, scorer=scorer, decoder=decoder, eos_bias=-1.0, seed=2)
  source = np.asarray(SOURCE)
  greedy_tokens, greedy_weights = decoding.greedy_decode(model, params, SOURCE, max_length=5)
  for beam_size in (0, 1):
    tokens, weights = decoding.decode(model, params, source, max_length=5, beam_size=beam_size)
    assert isinstance(tokens, np.ndarray) and tokens.dtype == np.int32 and tokens.shape == (3, 5)
    assert isinstance(weights, np.ndarray) and weights.dtype == np.float32 and weights.shape == (3, 5, 5)
    np.testing.assert_array_equal(tokens, greedy_tokens)
    np.testing.assert_array_equal(weights, greedy_weights)
  beam_tokens, beam_weights = decoding.beam_search(model, params, SOURCE, max_length=5, beam_size=3,
                                                   length_penalty=0.3)
  tokens, weights = decoding.decode(model, params, source, max_length=5, beam_size=3, length_penalty=0.3)
  assert tokens.dtype == np.int32 and weights.dtype == np.float32
  np.testing.assert_array_equal(tokens, beam_tokens)
  np.testing.assert_array_equal(weights, beam_weights)


def test_first_argmax_is_numpy_argmax_with_ties_and_nans():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 50)).astype(np.float32)
  x[1, 7] = x[1, 30] = x[1].max() + 1.0                 # a tie: the first index wins
  x[2, 11] = np.nan                                      # NaN counts as maximal, as in numpy
  x[3, :] = -np.inf
  x[4, 20] = np.inf
  np.testing.assert_array_equal(decoding.first_argmax(jnp.asarray(x)), np.argmax(x, axis=-1))
  batched = rng.normal(size=(2, 3, 9)).astype(np.float32)
  np.testing.assert_array_equal(decoding.first_argmax(jnp.asarray(batched)), np.argmax(batched, axis=-1))
  # Wider rows, several chunks of 32: ties and NaNs in different chunks, the maximum in the padded last chunk.
  wide = rng.normal(size=(7, 1000)).astype(np.float32)
  wide[0, [40, 700]] = wide[0].max() + 1.0
  wide[1, [990, 5]] = np.nan
  wide[2, 999] = wide[2].max() + 1.0
  wide[3, :] = -np.inf
  wide[4, 31] = wide[4, 32] = wide[4].max() + 1.0                 # a tie across a chunk boundary
  wide[5, 100] = wide[5].max() + 1.0
  wide[5, 800] = np.nan                                            # a NaN after the maximum still wins
  np.testing.assert_array_equal(jax.jit(decoding.first_argmax)(jnp.asarray(wide)), np.argmax(wide, axis=-1))


def _numpy_top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """The k largest entries of each row, ties to the lower index: a stable sort of -x."""
  order = np.argsort(-x, axis=-1, kind='stable')[..., :k]
  return np.take_along_axis(x, order, axis=-1), order


@pytest.mark.parametrize('shape, k, chunk', [((5, 1000), 8, 32), ((2, 3, 777), 5, 16), ((4, 100), 8, 32),
                                             ((3, 64), 4, 32), ((2, 40), 40, 8)])
def test_chunked_top_k_is_top_k_with_ties_and_infinities(shape, k, chunk):
  rng = np.random.default_rng(sum(shape) + k)
  x = rng.normal(size=shape).astype(np.float32)
  rows = x.reshape(-1, shape[-1])
  rows[0] = rng.integers(0, 3, size=shape[-1])          # many ties, also across chunks
  rows[1, : shape[-1] // 2] = -np.inf                    # a half of -inf (the padding is -inf too)
  rows[-1, -3:] = rows[-1].max() + 1.0                   # the largest entries in the last (padded) chunk
  values, indices = jax.jit(lambda x: decoding.chunked_top_k(x, k, chunk))(jnp.asarray(x))
  want_values, want_indices = _numpy_top_k(x, k)
  np.testing.assert_array_equal(np.asarray(indices), want_indices)
  np.testing.assert_array_equal(np.asarray(values), want_values)
  assert indices.dtype == jnp.int32


def test_chunked_top_k_rejects_more_than_it_has():
  with pytest.raises(ValueError, match='top 9 of 8'):
    decoding.chunked_top_k(jnp.zeros((2, 8)), 9)
