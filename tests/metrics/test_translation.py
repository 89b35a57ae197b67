"""translation_scores: exact match, BLEU and chrF on hand-checked corpora."""

import pytest
import sacrebleu

from attention_jax.metrics.translation import dropped_and_extra_units, translation_scores, translation_signatures


def test_exact_match_is_the_fraction_of_identical_strings():
  scores = translation_scores(['a b', 'c', 'd e'], ['a b', 'c ', 'd e'], tokenize='13a')
  assert scores['exact_match'] == pytest.approx(2 / 3)
  assert translation_scores(['x'], ['y'], tokenize='char')['exact_match'] == 0.0


@pytest.mark.parametrize('tokenize', ['13a', 'char'])
def test_identical_corpus_scores_100(tokenize):
  corpus = ['the cat sat on the mat', 'a quick brown fox jumps']
  scores = translation_scores(corpus, corpus, tokenize=tokenize)
  assert scores['bleu'] == pytest.approx(100.0)
  assert scores['chrf'] == pytest.approx(100.0)
  assert scores['exact_match'] == 1.0


def test_bleu_is_sacrebleu_corpus_bleu():
  hypotheses, references = ['the cat sat on a mat', 'a fox jumps high'], ['the cat sat on the mat', 'a fox jumps']
  for tokenize in ('13a', 'char'):
    want = sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score
    assert translation_scores(hypotheses, references, tokenize=tokenize)['bleu'] == want


def test_chrf_by_hand_and_against_sacrebleu_sentence_chrf():
  # 'ab' vs 'ac': unigram precision = recall = 1/2, no bigram match, no longer n-grams: mean P = R = 1/4 -> 25.
  assert translation_scores(['ab'], ['ac'], tokenize='13a')['chrf'] == pytest.approx(25.0)
  # Corpus statistics add up before averaging: unigrams 3/4 and bigrams 1/2 matched -> P = R = 5/8.
  assert translation_scores(['ab', 'xy'], ['ac', 'xy'], tokenize='13a')['chrf'] == pytest.approx(62.5)
  hypothesis, reference = 'the cat sat on a mat', 'the cat sat on the mat'
  want = sacrebleu.sentence_chrf(hypothesis, [reference]).score
  assert translation_scores([hypothesis], [reference], tokenize='13a')['chrf'] == pytest.approx(want, abs=1e-9)


def test_mismatched_lengths_raise():
  with pytest.raises(ValueError, match='2 hypotheses but 1 references'):
    translation_scores(['a', 'b'], ['a'], tokenize='13a')


def test_signatures_name_the_tokenizer_and_one_reference():
  signatures = translation_signatures(tokenize='char')
  assert signatures['bleu'].startswith('nrefs:1|') and '|tok:char|' in signatures['bleu']
  assert signatures['chrf'].startswith('nrefs:1|') and '|nc:6|' in signatures['chrf']


def test_dropped_and_extra_units_count_multiset_differences():
  # "the cat sat" vs "the the cat": 'sat' dropped, one 'the' extra; second pair identical.
  got = dropped_and_extra_units(['the the cat', 'a b'], ['the cat sat', 'a b'], unit='word')
  assert got == {'dropped_units': 1 / 5, 'extra_units': 1 / 5}
  got = dropped_and_extra_units(['aab c'], ['abcd'], unit='char')      # spaces are not units
  assert got == {'dropped_units': 1 / 4, 'extra_units': 1 / 4}
  assert dropped_and_extra_units(['x y'], ['y x'], unit='word') == {'dropped_units': 0.0, 'extra_units': 0.0}
  with pytest.raises(ValueError, match='Valid units: word, char'):
    dropped_and_extra_units(['a'], ['a'], unit='piece')
