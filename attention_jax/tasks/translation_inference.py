"""Translating with a trained workdir: its config.json, vocab.json (tokenizers) and a checkpoint.

    results = translate(['tue 3 jan. 1995'], workdir, output_dir)    # [(sentence, translation, heatmap PNG)]

The command-line entry point is experiments/translate.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from attention_jax import visualization
from attention_jax.data import load_tokenizers
from attention_jax.models import build_model
from attention_jax.special_tokens import EOS_ID
from attention_jax.tasks.translation_eval import decode_batch
from attention_jax.training import checkpointing
from attention_jax.training import steps


def load_translator(workdir: str, which: str = 'best') -> tuple:
  """(config, source tokenizer, target tokenizer, S, T, model, params) from a training workdir.

  Raises:
    FileNotFoundError: the workdir holds no translation run (no config.json); the message says how to make one.
  """
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{workdir!r} holds no training run (no config.json there). Train one first, e.g. '
                            f'python -m experiments.train --config=configs/default.py --workdir={workdir}')
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  source_tokenizer, target_tokenizer, max_source, max_target = load_tokenizers(workdir)
  model = build_model(config.model, source_vocab_size=source_tokenizer.vocab_size,
                      target_vocab_size=target_tokenizer.vocab_size, max_source_length=max_source)
  abstract = steps.create_train_state(model, steps.make_optimizer(config.train), config.seed,
                                      jnp.zeros((1, max_source), jnp.int32), jnp.zeros((1, max_target), jnp.int32))
  state = checkpointing.restore_for_inference(workdir, checkpointing.abstract_like(abstract),
                                              'best' if which == 'best' else 'checkpoints')
  return config, source_tokenizer, target_tokenizer, max_source, max_target, model, state.params


def _source_ids(tokenizer, text: str, max_source: int) -> list[int]:
  """The text's ids cut to fit S with EOS, then EOS: what the model was trained on."""
  return tokenizer.encode(text)[: max_source - 1] + [EOS_ID]


def translate(sentences: Sequence[str], workdir: str, output_dir: str, beam_size: int | None = None,
              which: str = 'best') -> list[tuple[str, str, str]]:
  """Translates `sentences` (greedy, or beam search if beam_size > 1; default: the run's eval.beam_size).

  Args:
    sentences: source texts; longer ones are cut to the run's source length S.
    workdir: a training workdir.
    output_dir: where translation_<i>.png attention heatmaps go.
    which: 'best' (falls back to the latest if no best was saved) or 'latest'.

  Returns:
    [(sentence, translation, heatmap path)].
  """
  config, source_tokenizer, target_tokenizer, max_source, max_target, model, params = load_translator(workdir, which)
  if beam_size is not None:
    config.eval.beam_size = beam_size
  source = np.zeros((len(sentences), max_source), np.int32)
  for i, sentence in enumerate(sentences):
    ids = _source_ids(source_tokenizer, sentence, max_source)
    source[i, : len(ids)] = ids
  tokens, weights = decode_batch(model, params, source, config.eval, max_target)     # beam search if beam_size > 1
  results = []
  for i, sentence in enumerate(sentences):
    output = target_tokenizer.decode(tokens[i])
    path = visualization.plot_attention(
        weights[i], source_tokenizer.tokens(source[i]), target_tokenizer.tokens(tokens[i]),
        os.path.join(output_dir, f'translation_{i:02d}.png'), title=f'{sentence!r} -> {output!r}')
    results.append((sentence, output, path))
  return results


def _padded_length(length: int, boundaries: Sequence[int], max_source: int) -> int:
  """The smallest bucket boundary >= length (the run's buckets, so few shapes compile), else max_source."""
  return min([b for b in boundaries if length <= b <= max_source] + [max_source])


def translate_lines(lines: Sequence[str], workdir: str, beam_size: int | None = None, which: str = 'best',
                    batch_size: int = 64) -> list[str]:
  """Translations of many source lines, in their order: batched by source length (each batch padded to the run's
  bucket boundary above its longest source), greedy or beam search as `translate`; an empty line gives ''.

  Args:
    lines: source texts; longer ones are cut to the run's source length S.
    workdir: a training workdir.
    beam_size: as `translate` (default: the run's eval.beam_size).
    which: 'best' or 'latest'.
    batch_size: sources decoded together.

  Returns:
    [translation] aligned with `lines`.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1; got {batch_size}.')
  config, source_tokenizer, target_tokenizer, max_source, max_target, model, params = load_translator(workdir, which)
  if beam_size is not None:
    config.eval.beam_size = beam_size
  boundaries = sorted(int(b) for b in config.data.get('bucket_boundaries', ()) or ())
  encoded = [_source_ids(source_tokenizer, line, max_source) if line.strip() else None for line in lines]
  order = sorted((i for i, ids in enumerate(encoded) if ids is not None), key=lambda i: len(encoded[i]))
  outputs = [''] * len(lines)
  for start in range(0, len(order), batch_size):
    chosen = order[start:start + batch_size]
    width = _padded_length(max(len(encoded[i]) for i in chosen), boundaries, max_source)
    source = np.zeros((batch_size, width), np.int32)       # a fixed batch size: one compile per width
    for row, i in enumerate(chosen):
      source[row, : len(encoded[i])] = encoded[i]
    tokens, _ = decode_batch(model, params, source, config.eval, max_target)
    for row, i in enumerate(chosen):
      outputs[i] = target_tokenizer.decode(tokens[row])
  return outputs
