"""ROUGE (Lin 2004) for summaries: n-gram (ROUGE-1, ROUGE-2) and longest-common-subsequence (ROUGE-L) overlap.

    rouge_scores(['the cat sat'], ['the cat sat on the mat'])   # {'rouge1': 66.7, 'rouge2': 57.1, 'rougeL': 66.7}

Conventions (those of the widely used `rouge-score` package with its defaults, no stemming): text is lower-cased
and every run of characters other than a-z and 0-9 separates tokens; per pair, precision = overlap / hypothesis
size, recall = overlap / reference size, F1 their harmonic mean (0 when the overlap is 0); n-gram overlap counts
each n-gram at most as often as it occurs in both (clipped counts). The corpus score is the mean F1 over pairs,
times 100. ROUGE-L here is sentence-level (no summary-level union LCS), which is what one-line summaries need.
Host-side Python; no jax.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

ROUGE_KEYS = ('rouge1', 'rouge2', 'rougeL')
_SEPARATOR = re.compile(r'[^a-z0-9]+')


def tokenize(text: str) -> list[str]:
  """Lower-cased alphanumeric tokens."""
  return [t for t in _SEPARATOR.split(text.lower()) if t]


def _f1(overlap: int, hypothesis_size: int, reference_size: int) -> tuple[float, float, float]:
  if overlap == 0:
    return 0.0, 0.0, 0.0
  precision, recall = overlap / hypothesis_size, overlap / reference_size
  return precision, recall, 2 * precision * recall / (precision + recall)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
  return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> tuple[float, float, float]:
  """(precision, recall, F1) of the clipped n-gram overlap of two token lists."""
  if n < 1:
    raise ValueError(f'ROUGE-N needs n >= 1; got n={n}.')
  hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
  overlap = sum((hyp & ref).values())
  return _f1(overlap, sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence (dynamic programming, O(len(a) len(b)) time, O(len(b)) memory)."""
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(hypothesis: Sequence[str], reference: Sequence[str]) -> tuple[float, float, float]:
  """(precision, recall, F1) of the longest common subsequence of two token lists."""
  return _f1(lcs_length(hypothesis, reference), len(hypothesis), len(reference))


def rouge_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Mean F1 x 100 of ROUGE-1, ROUGE-2 and ROUGE-L over aligned (hypothesis, reference) strings.

  Raises:
    ValueError: the two lists differ in length or are empty.
  """
  if len(hypotheses) != len(references) or not references:
    raise ValueError(f'ROUGE needs as many hypotheses as references (at least one); got {len(hypotheses)} '
                     f'hypotheses and {len(references)} references.')
  totals = dict.fromkeys(ROUGE_KEYS, 0.0)
  for hypothesis, reference in zip(hypotheses, references):
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    totals['rouge1'] += rouge_n(hyp, ref, 1)[2]
    totals['rouge2'] += rouge_n(hyp, ref, 2)[2]
    totals['rougeL'] += rouge_l(hyp, ref)[2]
  return {key: 100.0 * value / len(references) for key, value in totals.items()}
