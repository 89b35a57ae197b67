"""Exporting a trained translator with `jax.export`: encoder + greedy decoding and encoder + beam search, each one
serialized StableHLO function of the source ids, with the run's vocabularies beside them.

    export_translator('workdirs/default', 'exported/dates', beam_size=4)        # -> out_dir/manifest.json
    translator = ExportedTranslator.load('exported/dates')                      # attention_jax.exported_translator
    translator.translate(['tue 3 jan. 1995'], beam=True)

out_dir gets:
  greedy.jaxexport   source [B, S] int32 -> (tokens [B, T] int32, weights [B, T, S] float32)
  beam.jaxexport     source [B, S] int32 -> (tokens [B, K, T], weights [B, K, T, S], scores [B, K] float32): all K
                     hypotheses best first, scored log P / lp + cp (only when beam_size > 1)
  vocab.json         the run's tokenizers (a copy of <workdir>/vocab.json)
  manifest.json      S, T, K, the batch size (null: any), platforms, special token ids, jax version, format version
  exported_translator.py   a copy of the loader, which needs only jax and numpy (no flax, no attention_jax)

Design: the parameters are baked into each function as constants, so every .jaxexport file is self-contained (no
checkpoint, no parameter tree to rebuild); the cost is that beam.jaxexport and greedy.jaxexport each hold a copy of
the parameters. The batch dimension is symbolic (jax.export.symbolic_shape('b')) unless `batch_size` fixes it; the
source length is fixed to the run's S, so the loader pads every source to S (translate_lines pads to the run's bucket
boundaries instead; padding is masked, so the outputs are the same up to float rounding). The command-line entry
point is experiments/export_translator.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from attention_jax import decoding
from attention_jax import exported_translator
from attention_jax.data.tokenizers import VOCAB_FILE
from attention_jax.special_tokens import BOS_ID, EOS_ID, FIRST_TOKEN_ID, PAD_ID, UNK_ID
from attention_jax.tasks.translation_inference import load_translator


def _check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
  platforms = tuple(platforms)
  unknown = [p for p in platforms if p not in exported_translator.PLATFORMS]
  if not platforms or unknown or len(set(platforms)) != len(platforms):
    raise ValueError(f'platforms={",".join(platforms) or "(none)"} must be distinct names among '
                     f'{", ".join(exported_translator.PLATFORMS)}.')
  return platforms


def export_translator(workdir: str, out_dir: str, which: str = 'best', beam_size: int | None = None,
                      batch_size: int | None = None, platforms: Sequence[str] = ('cpu',)) -> str:
  """Exports the workdir's translator (greedy decoding, and beam search when beam_size > 1) to out_dir.

  Args:
    workdir: a training workdir (config.json, vocab.json, checkpoints).
    out_dir: where the export goes (created; an earlier export there is replaced).
    which: the checkpoint: 'best' (falls back to the latest), 'latest' or 'averaged'.
    beam_size: K of the exported beam search (default: the run's eval.beam_size; <= 1: greedy decoding only). Its
      length and coverage penalties are the run's eval.length_penalty and eval.coverage_penalty.
    batch_size: None: any batch size (symbolic batch dimension); B: only batches of B (the loader pads to it).
    platforms: what to lower for, among 'cpu', 'cuda', 'rocm', 'tpu' (several: one multi-platform artifact, e.g.
      ('cpu', 'tpu') for Colab TPUs).

  Returns:
    The path of out_dir/manifest.json.

  Raises:
    FileNotFoundError: no training run or checkpoint in workdir (the message says how to make one).
    ValueError: a bad beam_size, batch_size or platform name.
  """
  platforms = _check_platforms(platforms)
  if batch_size is not None and batch_size < 1:
    raise ValueError(f'batch_size must be >= 1 (or None for any batch size); got {batch_size}.')
  config, _, _, max_source, max_target, model, params = load_translator(workdir, which)
  beam_size = int(config.eval.beam_size if beam_size is None else beam_size)
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1 (1 = greedy decoding only); got {beam_size}.')
  length_penalty = float(config.eval.length_penalty)
  coverage_penalty = float(config.eval.get('coverage_penalty', 0.0))

  def greedy(source_BxS):
    return decoding.greedy_decode(model, params, source_BxS, max_length=max_target)

  def beam(source_BxS):
    tokens, weights, scores, _ = decoding.beam_search_n_best(
        model, params, source_BxS, max_length=max_target, beam_size=beam_size, n=beam_size,
        length_penalty=length_penalty, coverage_penalty_weight=coverage_penalty)
    return tokens, weights, scores

  batch = jax.export.symbolic_shape('b')[0] if batch_size is None else batch_size
  source_spec = jax.ShapeDtypeStruct((batch, max_source), jnp.int32)
  functions = {exported_translator.GREEDY_FILE: greedy}
  if beam_size > 1:
    functions[exported_translator.BEAM_FILE] = beam

  os.makedirs(out_dir, exist_ok=True)
  manifest_path = os.path.join(out_dir, exported_translator.MANIFEST_FILE)
  for name in (exported_translator.MANIFEST_FILE, exported_translator.BEAM_FILE):
    if os.path.exists(os.path.join(out_dir, name)):   # no stale manifest or beam from an earlier export
      os.remove(os.path.join(out_dir, name))
  for name, fn in functions.items():
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(source_spec)
    with open(os.path.join(out_dir, name), 'wb') as f:
      f.write(exported.serialize())
  shutil.copyfile(os.path.join(workdir, VOCAB_FILE), os.path.join(out_dir, exported_translator.VOCAB_FILE))
  shutil.copyfile(exported_translator.__file__, os.path.join(out_dir, exported_translator.LOADER_FILE))
  manifest = {
      'format': exported_translator.FORMAT,
      'format_version': exported_translator.FORMAT_VERSION,
      'source_length': int(max_source),
      'target_length': int(max_target),
      'beam_size': beam_size,
      'length_penalty': length_penalty,
      'coverage_penalty': coverage_penalty,
      'batch_size': batch_size,
      'platforms': list(platforms),
      'functions': sorted(functions),
      'vocab_file': exported_translator.VOCAB_FILE,
      'special_tokens': {'pad': PAD_ID, 'bos': BOS_ID, 'eos': EOS_ID, 'unk': UNK_ID, 'first': FIRST_TOKEN_ID},
      'jax_version': jax.__version__,
      'workdir': os.path.abspath(workdir),
      'checkpoint': which,
      'model': {key: config.model.get(key) for key in ('encoder', 'decoder', 'decoder_cell', 'scorer')},
  }
  with open(manifest_path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(manifest, f, indent=2)
  os.replace(manifest_path + '.tmp', manifest_path)   # written last: a directory with a manifest is complete
  return manifest_path
