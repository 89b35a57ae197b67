"""Character and word error rates of recognised text (Levenshtein distance / reference length, over a corpus).

    scores = error_rates(references, hypotheses)   # {'cer', 'wer', 'sentence_accuracy'}
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
  """The fewest substitutions, insertions and deletions turning `hypothesis` into `reference`."""
  previous = list(range(len(hypothesis) + 1))
  for i, r in enumerate(reference, 1):
    current = [i] + [0] * len(hypothesis)
    for j, h in enumerate(hypothesis, 1):
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
    previous = current
  return previous[-1]


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
  """Corpus CER (characters, spaces included) and WER: total edits / total reference length; and the share of
  utterances recognised exactly."""
  if len(references) != len(hypotheses):
    raise ValueError(f'{len(references)} references but {len(hypotheses)} hypotheses.')
  char_edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
  word_edits = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses))
  chars = max(sum(len(r) for r in references), 1)
  words = max(sum(len(r.split()) for r in references), 1)
  exact = sum(r == h for r, h in zip(references, hypotheses)) / max(len(references), 1)
  return {'cer': char_edits / chars, 'wer': word_edits / words, 'sentence_accuracy': exact}
