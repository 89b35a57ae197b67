"""Repetition and lead baselines of summaries, by hand."""

import pytest

from attention_jax.metrics import rouge
from attention_jax.metrics.summarisation import lead_baselines, lead_words, repeated_ngram_share


def test_repeated_ngram_share_by_hand():
  assert repeated_ngram_share(['the cat the cat sat'], n=2) == pytest.approx(25.0)     # 'the cat' again: 1 of 4
  assert repeated_ngram_share(['a b c a b c'], n=3) == pytest.approx(25.0)             # 'a b c' again: 1 of 4
  # Pooled over outputs, and only within an output: 'x y z' in two outputs is no repetition.
  assert repeated_ngram_share(['x y z', 'x y z', 'go go go go'], n=3) == pytest.approx(100.0 * 1 / 4)
  # ROUGE's tokens: case and punctuation do not make a trigram new.
  assert repeated_ngram_share(['Simulation of Simulation of, simulation OF'], n=2) == pytest.approx(60.0)
  assert repeated_ngram_share(['too short', ''], n=3) == 0.0
  with pytest.raises(ValueError, match='n >= 1'):
    repeated_ngram_share(['a'], n=0)


def test_lead_baselines_score_the_first_words():
  documents = ['Simple text editor for the terminal. It has syntax colouring.', 'A library for parsing XML files.']
  references = ['simple terminal text editor', 'XML parsing library']
  assert lead_words(documents[0], 3) == 'Simple text editor'
  assert lead_words('one two', 5) == 'one two'
  with pytest.raises(ValueError, match='>= 1 words'):
    lead_words(documents[0], 0)
  leads = lead_baselines(documents, references, lengths=(2, 4))
  assert set(leads) == {'lead2', 'lead4'}
  want = rouge.rouge_scores(['Simple text', 'A library'], references)
  for key in ('rouge1', 'rouge2', 'rougeL'):
    assert leads['lead2'][key] == pytest.approx(want[key])
  # 'Simple text' vs 'simple terminal text editor': P = 2/2, R = 2/4 -> F1 = 2/3; 'A library' vs 'XML parsing
  # library': P = 1/2, R = 1/3 -> F1 = 0.4; mean x 100.
  assert leads['lead2']['rouge1'] == pytest.approx(100 * (2 / 3 + 0.4) / 2)
  with pytest.raises(ValueError, match='2 documents but 1 references'):
    lead_baselines(documents, references[:1])
