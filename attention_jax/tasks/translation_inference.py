"""Translating with a trained workdir: its config.json, vocab.json (tokenizers) and a checkpoint.

    results = translate(['tue 3 jan. 1995'], workdir, output_dir)    # [Translation], PNGs + explorer.html
    outputs = translate_lines(lines, workdir)                         # [str], a whole file, batched by length
    n_best = translate_lines_n_best(lines, workdir, beam_size=4, n=4) # [[(translation, score)]]

The command-line entry point is experiments/translate.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attention_jax import attention_explorer
from attention_jax.attention_explorer import EXPLORER_FILE
from attention_jax import visualization
from attention_jax.data import load_tokenizers
from attention_jax.models import build_model
from attention_jax.special_tokens import EOS_ID
from attention_jax.tasks.translation_eval import decode_batch, decode_n_best, decoding_label
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
  # Shapes only (no initialisation is run): the checkpoint supplies the values.
  abstract = jax.eval_shape(lambda: steps.create_train_state(
      model, steps.make_optimizer(config.train), config.seed, jnp.zeros((1, max_source), jnp.int32),
      jnp.zeros((1, max_target), jnp.int32)))
  state = checkpointing.restore_for_inference(workdir, abstract, which)
  return config, source_tokenizer, target_tokenizer, max_source, max_target, model, state.params


def _source_ids(tokenizer, text: str, max_source: int) -> list[int]:
  """The text's ids cut to fit S with EOS, then EOS: what the model was trained on."""
  return tokenizer.encode(text)[: max_source - 1] + [EOS_ID]


@dataclasses.dataclass(frozen=True)
class Translation:
  """One source sentence's translations: `outputs` [n] best first with their `scores` [n], and the PNG heatmap of
  the best one's attention."""
  source: str
  outputs: list[str]
  scores: list[float]
  heatmap: str

  @property
  def output(self) -> str:
    return self.outputs[0]


def translate(sentences: Sequence[str], workdir: str, output_dir: str, beam_size: int | None = None,
              which: str = 'best', n_best: int = 1) -> list[Translation]:
  """Translates `sentences` (greedy, or beam search if beam_size > 1; default: the run's eval.beam_size), writes a
  heatmap PNG of each best translation and the attention explorer of them all (output_dir/explorer.html).

  Args:
    sentences: source texts; longer ones are cut to the run's source length S.
    workdir: a training workdir.
    output_dir: where translation_<i>.png and explorer.html go.
    beam_size: K (1 = greedy).
    which: 'best' (falls back to the latest if no best was saved) or 'latest'.
    n_best: how many outputs per sentence, best first (needs n_best <= K): scored log P / lp + cp by beam search,
      log P by greedy decoding.

  Returns:
    [Translation] aligned with `sentences`.
  """
  config, source_tokenizer, target_tokenizer, max_source, max_target, model, params = load_translator(workdir, which)
  if beam_size is not None:
    config.eval.beam_size = beam_size
  source = np.zeros((len(sentences), max_source), np.int32)
  for i, sentence in enumerate(sentences):
    ids = _source_ids(source_tokenizer, sentence, max_source)
    source[i, : len(ids)] = ids
  tokens, weights, scores = decode_n_best(model, params, source, config.eval, max_target, n_best)
  view = decoding_label(config.eval)
  results, pages = [], []
  for i, sentence in enumerate(sentences):
    source_tokens = source_tokenizer.tokens(source[i])
    outputs = [target_tokenizer.decode(tokens[i, k]) for k in range(n_best)]
    path = visualization.plot_attention(
        weights[i, 0], source_tokens, target_tokenizer.tokens(tokens[i, 0]),
        os.path.join(output_dir, f'translation_{i:02d}.png'), title=f'{sentence!r} -> {outputs[0]!r}')
    results.append(Translation(sentence, outputs, [float(x) for x in scores[i]], path))
    hypotheses = [attention_explorer.explorer_hypothesis(view, str(k + 1), target_tokenizer.tokens(tokens[i, k]),
                                                         weights[i, k], source_length=len(source_tokens),
                                                         score=float(scores[i, k])) for k in range(n_best)]
    pages.append(attention_explorer.explorer_sentence(source_tokens, hypotheses, source_text=sentence))
  attention_explorer.write_explorer(os.path.join(output_dir, EXPLORER_FILE), pages,
                                    title=f'{config.model.decoder} / {config.model.scorer} ({workdir})')
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
  return [outputs[0][0] if outputs else '' for outputs in
          _translate_batched(lines, workdir, beam_size, which, batch_size, n_best=None)]


def translate_lines_n_best(lines: Sequence[str], workdir: str, beam_size: int | None = None, which: str = 'best',
                           batch_size: int = 64, n: int = 1) -> list[list[tuple[str, float]]]:
  """As `translate_lines`, with the n best translations of each line and their scores (see `translate`).

  Returns:
    [[(translation, score)] n best first] aligned with `lines`; [] for an empty line.
  """
  return _translate_batched(lines, workdir, beam_size, which, batch_size, n_best=n)


def _translate_batched(lines, workdir, beam_size, which, batch_size, n_best):
  """[[(translation, score or None)]] per line ([] for an empty one); n_best None: the 1-best without scores."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1; got {batch_size}.')
  config, source_tokenizer, target_tokenizer, max_source, max_target, model, params = load_translator(workdir, which)
  if beam_size is not None:
    config.eval.beam_size = beam_size
  boundaries = sorted(int(b) for b in config.data.get('bucket_boundaries', ()) or ())
  encoded = [_source_ids(source_tokenizer, line, max_source) if line.strip() else None for line in lines]
  order = sorted((i for i, ids in enumerate(encoded) if ids is not None), key=lambda i: len(encoded[i]))
  outputs = [[] for _ in lines]
  for start in range(0, len(order), batch_size):
    chosen = order[start:start + batch_size]
    width = _padded_length(max(len(encoded[i]) for i in chosen), boundaries, max_source)
    source = np.zeros((batch_size, width), np.int32)       # a fixed batch size: one compile per width
    for row, i in enumerate(chosen):
      source[row, : len(encoded[i])] = encoded[i]
    if n_best is None:
      tokens, _ = decode_batch(model, params, source, config.eval, max_target)
      tokens, scores = tokens[:, None], np.full((batch_size, 1), np.nan)
    else:
      tokens, _, scores = decode_n_best(model, params, source, config.eval, max_target, n_best)
    for row, i in enumerate(chosen):
      outputs[i] = [(target_tokenizer.decode(tokens[row, k]), float(scores[row, k])) for k in range(tokens.shape[1])]
  return outputs
