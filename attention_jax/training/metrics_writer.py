"""Where metrics go: a JSONL file in the workdir (one object per event) and TensorBoard event files
(tensorboardX, no TensorFlow needed): scalars, and images such as attention heatmaps. Only process 0 writes."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np


class MetricsWriter:
  """Appends {'step', 'split', 'time', **metrics} to workdir/metrics.jsonl and scalars to workdir/tensorboard."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._enabled = jax.process_index() == 0
    self._tensorboard = None
    if self._enabled:
      from tensorboardX import SummaryWriter   # imported lazily: only process 0 writes events
      self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
    if not self._enabled:
      return
    record = {'step': int(step), 'split': split, 'time': time.time(), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for key, value in metrics.items():
      self._tensorboard.add_scalar(f'{split}/{key}', float(value), int(step))
    self._tensorboard.flush()

  def write_images(self, step: int, split: str, images: dict[str, np.ndarray]) -> None:
    """Logs each uint8 [H, W, 3] image to TensorBoard as '<split>/<name>' at `step`."""
    if not self._enabled or not images:
      return
    for name, image in images.items():
      self._tensorboard.add_image(f'{split}/{name}', np.asarray(image, np.uint8), int(step), dataformats='HWC')
    self._tensorboard.flush()

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """All records of workdir/metrics.jsonl."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
