"""How well attention weights align with gold source-target links (numpy, host side).

Hypothesis alignment A: for every real target token t, the link (t, argmax_s a_ts).
Gold alignment G: the sure links of the dataset (only sure links, so Och & Ney's S = P).

  AER = 1 - 2 |A ∩ G| / (|A| + |G|)                        (Och & Ney 2003 with S = P)
  argmax accuracy = #{t with gold links : argmax_s a_ts is one of t's gold sources} / #{t with gold links}

`alignment_counts` returns sums so batches and devices can be added up before `alignment_summary`.
For gold alignments with sure and possible links, and hypotheses with extra links above a weight threshold:
`hypothesis_alignment`, `aer_counts` / `aer_from_counts`, `alignment_error_rate`, `argmax_accuracy`.
"""

from __future__ import annotations

import numpy as np


def alignment_counts(weights: np.ndarray, gold: np.ndarray, target_mask: np.ndarray) -> dict[str, float]:
  """Sums over a batch.

  Args:
    weights: [B, T, S] attention weights.
    gold: [B, T, S] {0, 1} gold links.
    target_mask: [B, T] bool, True at real target tokens to score (exclude EOS and padding).

  Returns:
    {'hypothesis_links', 'gold_links', 'matched_links', 'argmax_hits', 'aligned_targets'} as floats.
  """
  weights, gold = np.asarray(weights), np.asarray(gold) > 0
  target_mask = np.asarray(target_mask, bool)
  if weights.shape != gold.shape or weights.shape[:2] != target_mask.shape:
    raise ValueError(f'weights {weights.shape}, gold {gold.shape} must be [B, T, S] and target_mask '
                     f'{target_mask.shape} [B, T].')
  best = weights.argmax(-1)                                                     # [B, T]
  hit = np.take_along_axis(gold, best[..., None], axis=-1)[..., 0]             # argmax is a gold link
  has_gold = gold.any(-1)
  gold_in_mask = gold & target_mask[..., None]
  return {
      'hypothesis_links': float(target_mask.sum()),
      'gold_links': float(gold_in_mask.sum()),
      'matched_links': float((hit & target_mask).sum()),
      'argmax_hits': float((hit & target_mask & has_gold).sum()),
      'aligned_targets': float((target_mask & has_gold).sum()),
  }


def alignment_summary(counts: dict[str, float]) -> dict[str, float]:
  """{'aer', 'argmax_accuracy'} from summed counts (NaN where undefined)."""
  denominator = counts['hypothesis_links'] + counts['gold_links']
  aer = 1.0 - 2.0 * counts['matched_links'] / denominator if denominator else float('nan')
  accuracy = counts['argmax_hits'] / counts['aligned_targets'] if counts['aligned_targets'] else float('nan')
  return {'aer': aer, 'argmax_accuracy': accuracy}


# Sure and possible links (Och & Ney 2003), for gold alignments that mark some links as only possible:
#   AER = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|),  with S ⊆ P (P is taken as S ∪ possible).
# With possible = None, P = S and this is the AER above.


def hypothesis_alignment(weights: np.ndarray, target_mask: np.ndarray | None = None,
                         threshold: float | None = None) -> np.ndarray:
  """Hypothesis links A from attention weights: each scored target token's argmax source position, plus every
  position whose weight is at least `threshold` (when given).

  Args:
    weights: [..., T, S] attention weights (e.g. [B, T, S] or [T, S]).
    target_mask: [..., T] bool, True at target tokens to score (default: all).
    threshold: optional extra links where weight >= threshold.

  Returns:
    bool [..., T, S].
  """
  weights = np.asarray(weights)
  links = np.zeros(weights.shape, bool)
  np.put_along_axis(links, weights.argmax(-1)[..., None], True, axis=-1)
  if threshold is not None:
    links |= weights >= threshold
  if target_mask is not None:
    links &= np.asarray(target_mask, bool)[..., None]
  return links


def aer_counts(hypothesis: np.ndarray, sure: np.ndarray, possible: np.ndarray | None = None) -> dict[str, float]:
  """Link counts behind AER, as sums that can be added over batches.

  Args:
    hypothesis: [..., T, S] {0, 1} hypothesis links A.
    sure: [..., T, S] {0, 1} sure gold links S.
    possible: [..., T, S] {0, 1} possible gold links (P = S ∪ possible); None: P = S.

  Returns:
    {'hypothesis', 'sure', 'hypothesis_and_sure', 'hypothesis_and_possible'} as floats.
  """
  a, s = np.asarray(hypothesis) > 0, np.asarray(sure) > 0
  p = s if possible is None else s | (np.asarray(possible) > 0)
  if a.shape != s.shape or a.shape != p.shape:
    raise ValueError(f'hypothesis {a.shape}, sure {s.shape} and possible {p.shape} must have the same shape.')
  return {'hypothesis': float(a.sum()), 'sure': float(s.sum()), 'hypothesis_and_sure': float((a & s).sum()),
          'hypothesis_and_possible': float((a & p).sum())}


def aer_from_counts(counts: dict[str, float]) -> float:
  """Och & Ney's AER from aer_counts (summed); NaN when there are no links at all."""
  denominator = counts['hypothesis'] + counts['sure']
  if not denominator:
    return float('nan')
  return 1.0 - (counts['hypothesis_and_sure'] + counts['hypothesis_and_possible']) / denominator


def alignment_error_rate(hypothesis: np.ndarray, sure: np.ndarray, possible: np.ndarray | None = None) -> float:
  """AER of hypothesis links against sure (and possible) gold links, all [..., T, S] {0, 1}."""
  return aer_from_counts(aer_counts(hypothesis, sure, possible))


def argmax_accuracy(weights: np.ndarray, gold: np.ndarray, target_mask: np.ndarray | None = None) -> float:
  """Fraction of scored target tokens that have gold links whose argmax source position is one of them.

  Args:
    weights: [..., T, S] attention weights.
    gold: [..., T, S] {0, 1} gold links.
    target_mask: [..., T] bool (default: all target tokens).

  Returns:
    The accuracy, NaN when no scored token has a gold link.
  """
  weights, gold = np.asarray(weights), np.asarray(gold) > 0
  mask = np.ones(weights.shape[:-1], bool) if target_mask is None else np.asarray(target_mask, bool)
  hit = np.take_along_axis(gold, weights.argmax(-1)[..., None], axis=-1)[..., 0]
  scored = mask & gold.any(-1)
  return float((hit & scored).sum() / scored.sum()) if scored.any() else float('nan')
