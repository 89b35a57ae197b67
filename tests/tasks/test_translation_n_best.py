"""n-best translation and the attention explorer of experiments.translate, on a workdir of random parameters."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from attention_jax import attention_explorer
from attention_jax import decoding
from attention_jax.data.tokenizers import CharTokenizer
from attention_jax.models import build_model
from attention_jax.special_tokens import EOS_ID
from attention_jax.tasks.translation_inference import EXPLORER_FILE, translate, translate_lines
from attention_jax.tasks.translation_inference import translate_lines_n_best
from configs import test_tiny
from tests.helpers.tiny_workdir import CHARACTERS, MAX_LENGTH, write_translation_workdir

ROOT = __file__.rsplit('/tests/', 1)[0]
LINES = ['dcba e', '', 'abc', 'a', 'abcdeab cd']


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A test_tiny workdir with one checkpoint of random parameters (step 5) and its state."""
  path = str(tmp_path_factory.mktemp('n_best'))
  return path, write_translation_workdir(path, checkpoint_steps=(5,))[5]


def _live_n_best(state, sentences, beam, n):
  """beam_search_n_best of the model built directly, on the sentences padded to S."""
  config = test_tiny.get_config()
  tokenizer = CharTokenizer(CHARACTERS)
  model = build_model(config.model, source_vocab_size=tokenizer.vocab_size, target_vocab_size=tokenizer.vocab_size,
                      max_source_length=MAX_LENGTH)
  source = np.zeros((len(sentences), MAX_LENGTH), np.int32)
  for i, sentence in enumerate(sentences):
    ids = tokenizer.encode(sentence) + [EOS_ID]
    source[i, :len(ids)] = ids
  tokens, weights, scores, _ = decoding.beam_search_n_best(
      model, jax.device_get(state.params), source, max_length=MAX_LENGTH, beam_size=beam, n=n,
      length_penalty=float(config.eval.length_penalty))
  texts = [[tokenizer.decode(t) for t in row] for row in np.asarray(tokens)]
  return texts, np.asarray(weights), np.asarray(scores), tokenizer, source, np.asarray(tokens)


def test_translate_returns_the_beams_n_best_and_writes_their_explorer(workdir, tmp_path):
  path, state = workdir
  sentences = ['abc', 'dcba e']
  results = translate(sentences, path, str(tmp_path), beam_size=3, which='latest', n_best=3)
  texts, weights, scores, tokenizer, source, tokens = _live_n_best(state, sentences, beam=3, n=3)
  assert [r.outputs for r in results] == texts
  np.testing.assert_allclose([r.scores for r in results], scores, rtol=1e-5)
  assert all(r.scores == sorted(r.scores, reverse=True) for r in results)
  data = attention_explorer.read_explorer_data(os.path.join(str(tmp_path), EXPLORER_FILE))
  assert [s['source_text'] for s in data['sentences']] == sentences
  for i, sentence in enumerate(data['sentences']):
    assert sentence['source'] == tokenizer.tokens(source[i])
    assert [h['view'] for h in sentence['hypotheses']] == ['beam3'] * 3
    for k, hypothesis in enumerate(sentence['hypotheses']):
      shown = tokenizer.tokens(tokens[i, k])
      assert hypothesis['tokens'] == shown
      np.testing.assert_allclose(hypothesis['weights'], weights[i, k, :len(shown), :len(sentence['source'])],
                                 atol=5e-5)


@pytest.mark.slow
def test_n_best_lines_in_order_and_the_moses_format_through_the_cli(workdir, tmp_path):
  path, state = workdir
  n_best = translate_lines_n_best(LINES, path, beam_size=3, which='latest', batch_size=2, n=2)
  kept = [line for line in LINES if line]
  texts, _, scores, *_ = _live_n_best(state, kept, beam=3, n=2)
  assert n_best[1] == []
  assert [[output for output, _ in entry] for entry in n_best if entry] == [row for row in texts]
  np.testing.assert_allclose([[score for _, score in entry] for entry in n_best if entry], scores, rtol=1e-5)
  assert [entry[0][0] if entry else '' for entry in n_best] == translate_lines(LINES, path, beam_size=3,
                                                                               which='latest', batch_size=2)
  (tmp_path / 'in.txt').write_text('\n'.join(LINES) + '\n')
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  run = lambda *flags: subprocess.run(
      [sys.executable, '-m', 'experiments.translate', f'--workdir={path}', '--checkpoint=latest', '--beam_size=3',
       *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
  done = run('--n_best=2', '--batch_size=2', f'--input={tmp_path / "in.txt"}')
  assert done.returncode == 0, done.stderr[-3000:]
  expected = [f'{i} ||| {output} ||| {score:.6g}' for i, entry in enumerate(n_best) for output, score in entry]
  assert done.stdout.splitlines() == expected
  # n_best wider than the beam: a two-line user error.
  bad = run('--n_best=4', 'abc')
  assert bad.returncode == 2 and 'beam_size >= 4; beam_size is 3' in bad.stderr, bad.stderr[-2000:]
  assert len(bad.stderr.strip().splitlines()) == 2


def test_greedy_n_best_is_one_output_scored_by_its_log_probability(workdir, tmp_path):
  path, state = workdir
  result, = translate(['abc'], path, str(tmp_path), beam_size=1, which='latest')
  config = test_tiny.get_config()
  tokenizer = CharTokenizer(CHARACTERS)
  model = build_model(config.model, source_vocab_size=tokenizer.vocab_size, target_vocab_size=tokenizer.vocab_size,
                      max_source_length=MAX_LENGTH)
  source = np.zeros((1, MAX_LENGTH), np.int32)
  source[0, :4] = tokenizer.encode('abc') + [EOS_ID]
  tokens, _ = decoding.greedy_decode(model, jax.device_get(state.params), source, max_length=MAX_LENGTH)
  log_p = decoding.sequence_log_prob(model, jax.device_get(state.params), source, tokens)
  assert result.outputs == [tokenizer.decode(np.asarray(tokens)[0])]
  np.testing.assert_allclose(result.scores, np.asarray(log_p), rtol=1e-5)
  assert os.path.exists(result.heatmap)
  with pytest.raises(ValueError, match=r'2 best outputs need beam search with beam_size >= 2; beam_size is 1'):
    translate(['abc'], path, str(tmp_path), beam_size=1, which='latest', n_best=2)
