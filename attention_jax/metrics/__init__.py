"""Host-side evaluation metrics (numpy / pure Python, no jax).

  alignment     AER and attention-argmax accuracy of attention weights against gold alignments
  ner           entity-level precision / recall / F1 of IOB tag sequences (conlleval conventions)
  recognition   character / word error rates of recognised speech (edit distance)
  rouge         ROUGE-1/2/L F1 for summaries
  translation   corpus BLEU, chrF and exact match of decoded outputs (sacrebleu)
"""
