"""AER and attention-argmax accuracy on hand-made alignments with hand-computed values."""

import numpy as np
import pytest

from attention_jax.metrics import alignment as am


def links(shape, pairs):
  out = np.zeros(shape, np.float32)
  for t, s in pairs:
    out[t, s] = 1
  return out


def test_hypothesis_is_the_argmax_per_scored_row_plus_threshold_links():
  weights = np.array([[0.6, 0.3, 0.1],
                      [0.2, 0.35, 0.45],
                      [0.5, 0.25, 0.25]])
  np.testing.assert_array_equal(am.hypothesis_alignment(weights), links((3, 3), [(0, 0), (1, 2), (2, 0)]))
  np.testing.assert_array_equal(am.hypothesis_alignment(weights, np.array([True, True, False]), threshold=0.3),
                                links((3, 3), [(0, 0), (0, 1), (1, 1), (1, 2)]))
  batched = am.hypothesis_alignment(np.stack([weights, weights[::-1]]))
  assert batched.shape == (2, 3, 3) and batched[1, 0, 0] and batched[1, 1, 2] and batched[1, 2, 0]


def test_aer_with_sure_links_only():
  # A = {(0,0), (1,2), (2,1)}, S = {(0,0), (1,1)}: |A∩S| = 1, AER = 1 - (1 + 1) / (3 + 2) = 0.6.
  hypothesis = links((3, 3), [(0, 0), (1, 2), (2, 1)])
  sure = links((3, 3), [(0, 0), (1, 1)])
  assert am.alignment_error_rate(hypothesis, sure) == pytest.approx(0.6)
  assert am.alignment_error_rate(sure, sure) == 0.0
  assert am.alignment_error_rate(links((3, 3), [(2, 2)]), sure) == 1.0


def test_aer_with_sure_and_possible_links():
  # A = {(0,0), (1,2), (2,1)}, S = {(0,0)}, P = S ∪ {(1,2), (1,1)}:
  # |A∩S| = 1, |A∩P| = 2, AER = 1 - (1 + 2) / (3 + 1) = 0.25.
  hypothesis = links((3, 3), [(0, 0), (1, 2), (2, 1)])
  sure = links((3, 3), [(0, 0)])
  possible = links((3, 3), [(1, 2), (1, 1)])
  counts = am.aer_counts(hypothesis, sure, possible)
  assert counts == {'hypothesis': 3.0, 'sure': 1.0, 'hypothesis_and_sure': 1.0, 'hypothesis_and_possible': 2.0}
  assert am.aer_from_counts(counts) == pytest.approx(0.25)
  # Counts add over batches: two copies give the same rate.
  doubled = {k: 2 * v for k, v in counts.items()}
  assert am.aer_from_counts(doubled) == pytest.approx(0.25)
  assert np.isnan(am.aer_from_counts({'hypothesis': 0.0, 'sure': 0.0, 'hypothesis_and_sure': 0.0,
                                      'hypothesis_and_possible': 0.0}))
  with pytest.raises(ValueError, match='same shape'):
    am.aer_counts(hypothesis, sure[:2])


def test_argmax_accuracy_skips_rows_without_gold_and_masked_rows():
  weights = np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.1, 0.8, 0.1]]])
  gold = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]]], np.float32)
  # Rows with gold: 0 (hit), 1 (miss), 3 (hit: argmax 1 is one of its two links) -> 2/3.
  assert am.argmax_accuracy(weights, gold) == pytest.approx(2 / 3)
  assert am.argmax_accuracy(weights, gold, np.array([[True, True, True, False]])) == pytest.approx(1 / 2)
  assert np.isnan(am.argmax_accuracy(weights, np.zeros_like(gold)))


def test_batch_counts_agree_with_the_set_definitions():
  rng = np.random.default_rng(0)
  weights = rng.random((3, 5, 6))
  gold = (rng.random((3, 5, 6)) > 0.7).astype(np.float32)
  mask = rng.random((3, 5)) > 0.2
  counts = am.alignment_counts(weights, gold, mask)
  hypothesis = am.hypothesis_alignment(weights, mask)
  sure = gold * mask[..., None]
  assert am.alignment_summary(counts)['aer'] == pytest.approx(am.alignment_error_rate(hypothesis, sure))
  assert am.alignment_summary(counts)['argmax_accuracy'] == pytest.approx(am.argmax_accuracy(weights, gold, mask))
  # Independent reference: python sets.
  a = {(b, t, int(weights[b, t].argmax())) for b in range(3) for t in range(5) if mask[b, t]}
  s = {(b, t, j) for b in range(3) for t in range(5) for j in range(6) if mask[b, t] and gold[b, t, j]}
  assert am.alignment_error_rate(hypothesis, sure) == pytest.approx(1 - 2 * len(a & s) / (len(a) + len(s)))
