"""Attention heatmaps (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def attention_figure(weights: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str],
                     title: str | None = None, gold: np.ndarray | None = None) -> plt.Figure:
  """A heatmap of attention weights: source tokens across the x axis, output tokens down the y axis.

  Args:
    weights: [T, S] (at least len(target_tokens) x len(source_tokens); cropped to them).
    source_tokens, target_tokens: axis labels (whitespace tokens are drawn as U+2423 so they stay visible).
    title: optional figure title.
    gold: optional [T, S] gold links, outlined in red.

  Returns:
    The figure (close it with plt.close when done).
  """
  t, s = len(target_tokens), len(source_tokens)
  shown = np.asarray(weights, np.float32)[:t, :s]
  fig, ax = plt.subplots(figsize=(max(3.0, 0.32 * s + 1.5), max(2.5, 0.32 * t + 1.2)))
  image = ax.imshow(shown, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
  ax.set_xticks(range(s), [_visible(x) for x in source_tokens], fontsize=8)
  for label in ax.get_xticklabels():
    # Characters read best upright; longer tokens (words, pieces, '</s>') need the room of a vertical label.
    label.set_rotation(90 if len(label.get_text()) > 1 else 0)
  ax.set_yticks(range(t), [_visible(x) for x in target_tokens], fontsize=8)
  ax.set_xlabel('source')
  ax.set_ylabel('output')
  if gold is not None:
    for row, col in zip(*np.nonzero(np.asarray(gold)[:t, :s])):
      ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor='red', linewidth=1.0))
  if title:
    ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  fig.tight_layout()
  return fig


def figure_pixels(fig: plt.Figure, dpi: int = 80) -> np.ndarray:
  """The figure rendered to an RGB image: uint8 [H, W, 3] (e.g. for TensorBoard)."""
  fig.set_dpi(dpi)
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def attention_pixels(weights: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str],
                     title: str | None = None, gold: np.ndarray | None = None, dpi: int = 80) -> np.ndarray:
  """attention_figure(...) as an RGB image: uint8 [H, W, 3]; weights [T, S] as attention_figure's."""
  fig = attention_figure(weights, source_tokens, target_tokens, title=title, gold=gold)
  try:
    return figure_pixels(fig, dpi)
  finally:
    plt.close(fig)


def plot_attention(weights: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str], path: str,
                   title: str | None = None, gold: np.ndarray | None = None) -> str:
  """Saves attention_figure(...) as a PNG at `path` (directories are created); returns path.

  Args:
    weights: [T, S]; see attention_figure for the other arguments.
  """
  fig = attention_figure(weights, source_tokens, target_tokens, title=title, gold=gold)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _visible(token: str) -> str:
  """Whitespace shown as an open box (U+2423), so a space token's tick label is not blank."""
  return '\u2423' * len(token) if token.isspace() else token


def word_attention_html(rows: Sequence[tuple[Sequence[str], np.ndarray, str]], path: str) -> str:
  """An HTML page with one line per sentence, each word shaded by its attention weight.

  Args:
    rows: (words, weights [len(words)], caption) per sentence.
    path: the .html file to write.
  """
  import html
  parts = ['<!doctype html><meta charset="utf-8"><title>attention</title>',
           '<style>body{font-family:sans-serif} p{line-height:2} span{padding:2px 3px;border-radius:3px}</style>']
  for words, weights, caption in rows:
    weights = np.asarray(weights, np.float32)
    top = max(float(weights.max()), 1e-9)
    spans = ''.join(f'<span title="{w:.3f}" style="background:rgba(255,80,0,{w / top:.2f})">{html.escape(word)}</span> '
                    for word, w in zip(words, weights))
    parts.append(f'<p><b>{html.escape(caption)}</b><br>{spans}</p>')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(parts))
  return path


def plot_word_attention(rows: Sequence[tuple[Sequence[str], np.ndarray, str]], path: str) -> str:
  """A PNG with one horizontal strip per sentence: the words, shaded by attention weight."""
  fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.6 * len(rows) + 0.4), squeeze=False)
  for ax, (words, weights, caption) in zip(axes[:, 0], rows):
    weights = np.asarray(weights, np.float32)[None, : len(words)]
    ax.imshow(weights, cmap='Oranges', vmin=0.0, vmax=max(float(weights.max()), 1e-9), aspect='auto')
    ax.set_xticks(range(len(words)), words, fontsize=7, rotation=45, ha='right')
    ax.set_yticks([])
    ax.set_title(caption, fontsize=8, loc='left')
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_image_attention(image: np.ndarray, weights: np.ndarray, grid: tuple[int, int], labels: Sequence[str],
                         path: str, title: str | None = None) -> str:
  """Overlays each output step's spatial attention on the image: one panel per emitted token.

  Args:
    image: [H, W] or [H, W, 1] in [0, 1].
    weights: [T, h * w] attention over the feature grid.
    grid: (h, w) of the feature grid.
    labels: one caption per panel (len <= T).
  """
  image = np.asarray(image, np.float32).squeeze()
  height, width = image.shape
  fig, axes = plt.subplots(len(labels), 1, figsize=(0.12 * width + 1, 0.9 * len(labels) + 0.5), squeeze=False)
  for ax, label, w in zip(axes[:, 0], labels, np.asarray(weights)):
    ax.imshow(image, cmap='gray_r', extent=(0, width, height, 0))
    ax.imshow(w.reshape(grid), cmap='jet', alpha=0.5, extent=(0, width, height, 0), interpolation='bilinear')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, labelpad=12, fontsize=9)
  if title:
    axes[0, 0].set_title(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_glimpse_paths(images: np.ndarray, centres: np.ndarray, sides: np.ndarray, boxes: np.ndarray,
                       item_size: int, titles: Sequence[str], path: str, columns: int = 4) -> str:
  """Draws where a recurrent attention model looked: one panel per image, a numbered rectangle per glimpse.

  Args:
    images: [N, H, W] in [0, 1].
    centres: [N, n, 2] glimpse centres (y, x) in pixels (glimpses.location_to_pixels).
    sides: [N, n] the side in pixels of each glimpse's finest patch (drawn as the rectangle).
    boxes: [N, 2] (top, left) of the item, drawn dashed as an item_size square.
    titles: one caption per panel.
  """
  images, centres, sides = np.asarray(images, np.float32), np.asarray(centres), np.asarray(sides)
  count, height, width = images.shape
  rows = (count + columns - 1) // columns
  fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
  colours = plt.get_cmap('autumn')
  for k, ax in enumerate(axes.ravel()):
    ax.set_axis_off()
    if k >= count:
      continue
    ax.imshow(images[k], cmap='gray', vmin=0, vmax=1, extent=(0, width, height, 0))
    top, left = boxes[k]
    ax.add_patch(plt.Rectangle((left, top), item_size, item_size, fill=False, ec='lime', ls='--', lw=1))
    steps = len(centres[k])
    ax.plot(centres[k, :, 1], centres[k, :, 0], color='cyan', lw=0.8, alpha=0.8)
    for t, ((y, x), side) in enumerate(zip(centres[k], sides[k])):
      colour = colours(t / max(steps - 1, 1))
      ax.add_patch(plt.Rectangle((x - side / 2, y - side / 2), side, side, fill=False, ec=colour, lw=1.2))
      ax.text(x, y, str(t + 1), color=colour, fontsize=8, ha='center', va='center', fontweight='bold')
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_title(titles[k], fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
