"""Corpus-level translation scores of decoded outputs against one reference each (host side, sacrebleu).

    translation_scores(hypotheses, references, tokenize='13a')   # {'bleu': ..., 'chrf': ..., 'exact_match': ...}
    translation_signatures(tokenize='13a')                         # {'bleu': 'nrefs:1|case:mixed|...', 'chrf': ...}
    dropped_and_extra_units(hypotheses, references, unit='word')   # {'dropped_units': ..., 'extra_units': ...}

BLEU is sacrebleu's corpus BLEU with its defaults and the given tokenizer ('13a' for words, 'char' for character
tasks); chrF is sacrebleu's corpus chrF with its defaults (character 6-grams, beta 2, whitespace ignored); both
are 0-100. exact_match is the fraction (0-1) of hypotheses equal to their reference string.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
import sacrebleu


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str) -> dict[str, float]:
  """BLEU, chrF and exact match of a corpus.

  Args:
    hypotheses: [N] decoded strings.
    references: [N] reference strings, one per hypothesis.
    tokenize: sacrebleu's BLEU tokenizer, e.g. '13a' or 'char'.

  Returns:
    {'bleu': corpus BLEU, 'chrf': corpus chrF (both 0-100), 'exact_match': mean of hypothesis == reference}.

  Raises:
    ValueError: if the two lists differ in length.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} references; they must pair up.')
  return {
      'bleu': sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score,
      'chrf': sacrebleu.corpus_chrf(hypotheses, [references]).score,
      'exact_match': float(np.mean([h == r for h, r in zip(hypotheses, references)])),
  }


def translation_signatures(*, tokenize: str) -> dict[str, str]:
  """sacrebleu's signatures of the BLEU and chrF that `translation_scores` computes, to report with the scores.

  Returns:
    {'bleu': e.g. 'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0', 'chrf': 'nrefs:1|...'}.
  """
  signatures = {}
  for name, metric in (('bleu', sacrebleu.BLEU(tokenize=tokenize)), ('chrf', sacrebleu.CHRF())):
    # sacrebleu learns the number of references (part of the signature) only when it scores a corpus.
    metric.corpus_score(['a'], [['a']])
    signatures[name] = metric.get_signature().format()
  return signatures


def dropped_and_extra_units(hypotheses: Sequence[str], references: Sequence[str], *, unit: str) -> dict[str, float]:
  """Under- and over-translation as bag-of-units differences from the references (Tu et al. 2016's failure modes
  that coverage targets): per reference unit, how many reference units the outputs lack (dropped) and how many
  output units the references do not have, repeats included (extra).

  Args:
    hypotheses, references: [N] strings, paired.
    unit: 'word' (whitespace-separated) or 'char' (characters, spaces excluded).

  Returns:
    {'dropped_units': sum_n |ref_n - hyp_n| / sum_n |ref_n|, 'extra_units': sum_n |hyp_n - ref_n| / sum_n |ref_n|},
    with - the multiset difference; 0 for outputs that use exactly the reference's units.
  """
  if unit not in ('word', 'char'):
    raise ValueError(f"Unknown unit {unit!r}. Valid units: word, char.")
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} references; they must pair up.')
  split = (lambda text: text.split()) if unit == 'word' else (lambda text: [c for c in text if not c.isspace()])
  dropped = extra = total = 0
  for hypothesis, reference in zip(hypotheses, references):
    hyp, ref = collections.Counter(split(hypothesis)), collections.Counter(split(reference))
    dropped += sum((ref - hyp).values())
    extra += sum((hyp - ref).values())
    total += sum(ref.values())
  total = max(total, 1)
  return {'dropped_units': dropped / total, 'extra_units': extra / total}
