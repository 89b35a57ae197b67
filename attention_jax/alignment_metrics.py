"""How well attention weights align with gold source-target links (numpy, host side).

Hypothesis alignment A: for every real target token t, the link (t, argmax_s a_ts).
Gold alignment G: the sure links of the dataset (only sure links, so Och & Ney's S = P).

  AER = 1 - 2 |A ∩ G| / (|A| + |G|)                        (Och & Ney 2003 with S = P)
  argmax accuracy = #{t with gold links : argmax_s a_ts is one of t's gold sources} / #{t with gold links}

`alignment_counts` returns sums so batches and devices can be added up before `alignment_summary`.
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
