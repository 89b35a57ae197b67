"""Attention heatmaps (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def plot_attention(weights: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str], path: str,
                   title: str | None = None, gold: np.ndarray | None = None) -> str:
  """Saves a PNG of attention weights: output tokens down the rows, source tokens across the columns.

  Args:
    weights: [T, S] (at least len(target_tokens) x len(source_tokens); cropped to them).
    source_tokens, target_tokens: axis labels.
    path: the PNG to write (directories are created).
    title: optional figure title.
    gold: optional [T, S] gold links, outlined in the figure.

  Returns:
    path.
  """
  t, s = len(target_tokens), len(source_tokens)
  shown = np.asarray(weights, np.float32)[:t, :s]
  fig, ax = plt.subplots(figsize=(max(3.0, 0.32 * s + 1.5), max(2.5, 0.32 * t + 1.2)))
  image = ax.imshow(shown, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
  ax.set_xticks(range(s), [repr(x)[1:-1] if x == ' ' else x for x in source_tokens], rotation=90, fontsize=8)
  ax.set_yticks(range(t), target_tokens, fontsize=8)
  ax.set_xlabel('source')
  ax.set_ylabel('output')
  if gold is not None:
    for row, col in zip(*np.nonzero(np.asarray(gold)[:t, :s])):
      ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor='red', linewidth=1.0))
  if title:
    ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
