"""Entity-level precision, recall and F1 for IOB tag sequences, by the conventions of conlleval and seqeval's
default (non-strict) mode.

An entity (chunk) starts at B-X, or at I-X when the previous tag is O or of another type (CoNLL-2003's IOB1 files
start most entities with I-); it continues over I-X and ends before any other tag. A predicted entity counts only
when its type and both boundaries match a gold one.

    scores = entity_scores(gold_sequences, predicted_sequences)
    scores['f1'], scores['precision'], scores['recall'], scores['f1_PER'], ...
"""

from __future__ import annotations

from collections.abc import Sequence


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
  """{(type, start, end exclusive)} of one sentence's tags ('O', 'B-X', 'I-X')."""
  found, start, kind = set(), None, None
  for i, tag in enumerate(list(tags) + ['O']):
    prefix, _, tag_kind = tag.partition('-')
    begins = prefix == 'B' or (prefix == 'I' and tag_kind != kind)
    if kind is not None and (prefix == 'O' or begins):
      found.add((kind, start, i))
      kind = None
    if prefix in ('B', 'I') and (begins or kind is None):
      start, kind = i, tag_kind
  return found


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
  """Micro precision / recall / F1 over all entities, and per type ('precision_PER', 'recall_PER', 'f1_PER', ...).

  Raises:
    ValueError: when the two lists differ in sentences or a sentence's two tag sequences differ in length.
  """
  if len(gold) != len(predicted):
    raise ValueError(f'{len(gold)} gold sentences but {len(predicted)} predicted.')
  counts: dict[str, list[int]] = {}            # type -> [true positives, predicted, gold]
  for i, (g, p) in enumerate(zip(gold, predicted)):
    if len(g) != len(p):
      raise ValueError(f'Sentence {i}: {len(g)} gold tags but {len(p)} predicted.')
    gold_entities, predicted_entities = entities(g), entities(p)
    for kind, *_ in gold_entities | predicted_entities:
      counts.setdefault(kind, [0, 0, 0])
    for entity in predicted_entities:
      counts[entity[0]][1] += 1
      counts[entity[0]][0] += entity in gold_entities
    for entity in gold_entities:
      counts[entity[0]][2] += 1

  def prf(tp, n_predicted, n_gold):
    precision = tp / n_predicted if n_predicted else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1

  totals = [sum(c[k] for c in counts.values()) for k in range(3)]
  precision, recall, f1 = prf(*totals)
  scores = {'precision': precision, 'recall': recall, 'f1': f1}
  for kind in sorted(counts):
    scores[f'precision_{kind}'], scores[f'recall_{kind}'], scores[f'f1_{kind}'] = prf(*counts[kind])
  return scores
