"""What summaries are judged by besides ROUGE: repetition within an output, and the lead baselines.

    repeated_ngram_share(['the cat the cat sat'], n=2)     # 25.0: of its 4 bigrams, 1 repeats an earlier one
    lead_words('Simple text editor for the terminal. It has ...', 5)   # 'Simple text editor for the'
    lead_baselines(documents, references, lengths=(5, 10, 15))      # {'lead5': {'rouge1': ...}, ...}

Tokens are ROUGE's (lower-cased alphanumeric runs, attention_jax.metrics.rouge.tokenize). Host-side Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from attention_jax.metrics.rouge import rouge_scores, tokenize


def repeated_ngram_share(hypotheses: Sequence[str], n: int = 3) -> float:
  """Percentage of the outputs' n-grams that repeat an n-gram earlier in the same output (See et al. 2017, fig. 4:
  the repetition coverage removes), over all n-grams of all outputs; 0 when no output has n tokens."""
  if n < 1:
    raise ValueError(f'n-grams need n >= 1; got n={n}.')
  repeated = total = 0
  for hypothesis in hypotheses:
    tokens = tokenize(hypothesis)
    seen = set()
    for i in range(len(tokens) - n + 1):
      gram = tuple(tokens[i:i + n])
      repeated += gram in seen
      seen.add(gram)
      total += 1
  return 100.0 * repeated / total if total else 0.0


def lead_words(document: str, count: int) -> str:
  """The document's first `count` words (whitespace-separated, as written)."""
  if count < 1:
    raise ValueError(f'A lead baseline takes >= 1 words; got {count}.')
  return ' '.join(document.split()[:count])


def lead_baselines(documents: Sequence[str], references: Sequence[str],
                   lengths: Sequence[int] = (5, 8, 10, 12, 15, 20)) -> dict[str, dict[str, float]]:
  """ROUGE-1/2/L F1 and the repeated-trigram share of the first-k-words summary for each k in `lengths`:
  {'lead<k>': {'rouge1', 'rouge2', 'rougeL', 'repeated_trigrams'}}."""
  if len(documents) != len(references):
    raise ValueError(f'{len(documents)} documents but {len(references)} references.')
  out = {}
  for k in lengths:
    leads = [lead_words(d, int(k)) for d in documents]
    out[f'lead{k}'] = {**rouge_scores(leads, references), 'repeated_trigrams': repeated_ngram_share(leads, 3)}
  return out
