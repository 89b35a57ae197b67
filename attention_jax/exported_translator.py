"""Translating from an exported translator (attention_jax.tasks.translation_export) with jax and numpy only.

    translator = ExportedTranslator.load('exported/dates')
    translator.translate(['tue 3 jan. 1995'])                          # ['1995-01-03'], greedy
    translator.translate(lines, beam=True)                             # beam search (if it was exported)
    [(text, weights [t, s])] = translator.translate_with_attention(lines, beam=False)
    [[(text, score)] n best first] = translator.translate_n_best(lines, n=4)

An export directory holds manifest.json, greedy.jaxexport, beam.jaxexport (when exported with beam_size > 1),
vocab.json (the run's tokenizers) and a copy of this file. This module imports no flax, no models and no training
code (only jax, numpy and the standard library; SentencePiece vocabularies also need the sentencepiece package), so
the copy in the export directory translates without the attention_jax package:

    sys.path.insert(0, 'exported/dates')
    from exported_translator import ExportedTranslator

(`import attention_jax.exported_translator` also works, but the attention_jax package imports flax.)
Sources are encoded as in training (cut to S - 1 tokens, then EOS) and padded to the exported source length S.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

FORMAT = 'attention_jax.exported_translator'
FORMAT_VERSION = 1
MANIFEST_FILE = 'manifest.json'
GREEDY_FILE = 'greedy.jaxexport'
BEAM_FILE = 'beam.jaxexport'
VOCAB_FILE = 'vocab.json'
LOADER_FILE = 'exported_translator.py'
# jax.export's platform names; a jax device of platform 'gpu' runs an export lowered for 'cuda' or 'rocm'.
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
_DEVICE_PLATFORMS = {'gpu': ('cuda', 'rocm')}


@dataclasses.dataclass(frozen=True)
class _Special:
  """The special token ids the run used (attention_jax.special_tokens), as the manifest records them."""
  pad: int
  bos: int
  eos: int
  unk: int
  first: int   # the first ordinary token id


class _CharVocab:
  """attention_jax.data.tokenizers.CharTokenizer's encode/decode, read from its to_json() form."""

  def __init__(self, characters: str, special: _Special):
    self.characters, self.special = characters, special
    self._index = {c: i + special.first for i, c in enumerate(characters)}

  def encode(self, text: str) -> list[int]:
    return [self._index.get(c, self.special.unk) for c in text]

  def decode(self, ids: Sequence[int]) -> str:
    """Stops at EOS; drops PAD/BOS; UNK shows as '?'."""
    out = []
    for i in ids:
      if i == self.special.eos:
        break
      if i >= self.special.first:
        out.append(self.characters[i - self.special.first])
      elif i == self.special.unk:
        out.append('?')
    return ''.join(out)


class _SentencePieceVocab:
  """attention_jax.data.tokenizers.SentencePieceTokenizer's encode/decode, read from its to_json() form."""

  def __init__(self, model_proto: bytes, special: _Special):
    try:
      import sentencepiece
    except ImportError as error:
      raise ImportError('This export has a SentencePiece vocabulary: pip install sentencepiece.') from error
    self.special = special
    self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    """Stops at EOS; drops PAD and BOS."""
    ids = list(ids)
    if self.special.eos in ids:
      ids = ids[: ids.index(self.special.eos)]
    return self._processor.decode([i for i in ids if i not in (self.special.pad, self.special.bos)])


def _vocab(data: dict, special: _Special):
  if data.get('type') == 'char':
    return _CharVocab(data['characters'], special)
  if data.get('type') == 'sentencepiece':
    return _SentencePieceVocab(base64.b64decode(data['model']), special)
  raise ValueError(f'Unknown vocabulary type {data.get("type")!r} in {VOCAB_FILE}. Valid types: char, '
                   'sentencepiece.')


def _read_json(path: str, what: str) -> dict:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No {os.path.basename(path)} in {os.path.dirname(path)!r}: {what}')
  with open(path, encoding='utf-8') as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as error:
      raise ValueError(f'{path} is not valid JSON ({error}); export the translator again.') from None


def _deserialize(path: str, manifest: dict) -> jax.export.Exported:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} is missing: the export directory is incomplete; export the translator again.')
  with open(path, 'rb') as f:
    serialized = bytearray(f.read())
  try:
    return jax.export.deserialize(serialized)
  except Exception as error:   # flatbuffer or version errors: say which versions are involved
    raise ValueError(f'Cannot read {path} (exported with jax {manifest.get("jax_version")}, this is jax '
                     f'{jax.__version__}): {error}. Export it again with this jax version.') from error


def _next_power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


@dataclasses.dataclass(frozen=True)
class ExportedTranslator:
  """A translator loaded from an export directory (see `load`); translates lists of source lines."""
  directory: str
  manifest: dict
  source_vocab: Any
  target_vocab: Any
  greedy: jax.export.Exported
  beam: jax.export.Exported | None
  device: Any = None
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @classmethod
  def load(cls, directory: str, device=None) -> ExportedTranslator:
    """Reads an export directory written by attention_jax.tasks.translation_export.export_translator.

    Args:
      directory: the export directory (holds manifest.json).
      device: the jax device to translate on (default: jax's default device); the export must have been lowered
        for its platform (manifest 'platforms'), e.g. jax.devices('cpu')[0] on a TPU host with a CPU export.

    Raises:
      FileNotFoundError: no such directory, or no manifest.json / a missing file in it.
      ValueError: not an exported translator, another format version, or exported for other platforms than the
        device's; each message says what to do.
    """
    if not os.path.isdir(directory):
      raise FileNotFoundError(f'No export directory {directory!r}. Make one with `python -m '
                              f'experiments.export_translator --workdir=<training workdir> --out_dir={directory}`.')
    manifest = _read_json(os.path.join(directory, MANIFEST_FILE),
                          'not an exported translator (or its export did not finish). Make one with `python -m '
                          f'experiments.export_translator --workdir=<training workdir> --out_dir={directory}`.')
    if manifest.get('format') != FORMAT:
      raise ValueError(f'{directory!r} holds no exported translator ({MANIFEST_FILE} format is '
                       f'{manifest.get("format")!r}, expected {FORMAT!r}).')
    if manifest.get('format_version') != FORMAT_VERSION:
      raise ValueError(f'{directory!r} is an exported translator of format version {manifest.get("format_version")};'
                       f' this loader reads version {FORMAT_VERSION}. Use the {LOADER_FILE} copied into that '
                       'directory, or export the translator again with this version of attention_jax.')
    device = device if device is not None else jax.devices()[0]
    runs_on = _DEVICE_PLATFORMS.get(device.platform, (device.platform,))
    platforms = tuple(manifest['platforms'])
    if not set(runs_on) & set(platforms):
      raise ValueError(f'{directory!r} was exported for {", ".join(platforms)}, not for this {device.platform} '
                       f'device. Export again with --platforms={",".join(platforms + runs_on[:1])}, or load with '
                       "device=jax.devices('cpu')[0]" + (' to run on the CPU.' if 'cpu' in platforms else '.'))
    special = _Special(**manifest['special_tokens'])
    vocab = _read_json(os.path.join(directory, manifest['vocab_file']),
                       'the export directory is incomplete; export the translator again.')
    beam = _deserialize(os.path.join(directory, BEAM_FILE), manifest) if manifest['beam_size'] > 1 else None
    return cls(directory, manifest, _vocab(vocab['source'], special), _vocab(vocab['target'], special),
               _deserialize(os.path.join(directory, GREEDY_FILE), manifest), beam, device)

  @property
  def source_length(self) -> int:
    """S: sources are cut to S - 1 tokens plus EOS, then padded to S."""
    return int(self.manifest['source_length'])

  @property
  def target_length(self) -> int:
    """T: the most output positions (EOS included)."""
    return int(self.manifest['target_length'])

  @property
  def beam_size(self) -> int:
    """K of the exported beam search; 1 when only greedy decoding was exported."""
    return int(self.manifest['beam_size'])

  def source_ids(self, line: str) -> list[int]:
    """The line's ids as the model reads them: cut to S - 1 tokens, then EOS (as in training)."""
    return self.source_vocab.encode(line)[: self.source_length - 1] + [self.manifest['special_tokens']['eos']]

  def translate(self, lines: Sequence[str], beam: bool = False, batch_size: int = 64) -> list[str]:
    """Translations of `lines`, in order; an empty (or all-whitespace) line gives ''.

    Args:
      lines: source texts.
      beam: beam search (the exported beam_size) instead of greedy decoding.
      batch_size: most sources decoded together (each batch is padded to a power of two, so few shapes compile).
    """
    return [text for text, _ in self.translate_with_attention(lines, beam, batch_size)]

  def translate_with_attention(self, lines: Sequence[str], beam: bool = False,
                               batch_size: int = 64) -> list[tuple[str, np.ndarray]]:
    """As `translate`, with the attention weights of each translation.

    Returns:
      [(translation, weights [t, s] float32)] aligned with `lines`: t the output positions up to and including EOS
      (T if no EOS), s the source ids (`source_ids`, EOS included); an empty line gives ('', [0, 0]).
    """
    results = []
    for ids, (tokens, weights, _) in zip(*self._decode(lines, beam, batch_size)):
      if tokens is None:
        results.append(('', np.zeros((0, 0), np.float32)))
        continue
      results.append((self.target_vocab.decode(tokens[0]), weights[0, : self._output_length(tokens[0]), : len(ids)]))
    return results

  def translate_n_best(self, lines: Sequence[str], n: int | None = None,
                       batch_size: int = 64) -> list[list[tuple[str, float]]]:
    """The n best beam-search translations of each line (n <= beam_size, default all of them), best first, with the
    scores beam search ranks by, log P / lp + cp; [] for an empty line."""
    n = self.beam_size if n is None else n
    if not 1 <= n <= self.beam_size or self.beam is None:
      raise ValueError(f'{n} best translations need 1 <= n <= the exported beam_size ({self.beam_size})'
                       + ('; this export has greedy decoding only: export again with --beam_size=4.'
                          if self.beam is None else '.'))
    return [[] if tokens is None else [(self.target_vocab.decode(tokens[k]), float(scores[k])) for k in range(n)]
            for _, (tokens, _, scores) in zip(*self._decode(lines, True, batch_size))]

  def _output_length(self, tokens: np.ndarray) -> int:
    eos = np.flatnonzero(tokens == self.manifest['special_tokens']['eos'])
    return int(eos[0]) + 1 if eos.size else len(tokens)

  def _decode(self, lines, beam: bool, batch_size: int):
    """([source ids or None], [(tokens [n, T], weights [n, T, S], scores [n] or None) or (None,) * 3]) per line."""
    if isinstance(lines, str):
      raise ValueError('lines must be a list of source texts, not one string: pass [text].')
    lines = list(lines)
    if not lines:
      raise ValueError('No lines to translate: pass a non-empty list of source texts.')
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1; got {batch_size}.')
    if beam and self.beam is None:
      raise ValueError(f'{self.directory!r} has greedy decoding only (exported with beam_size 1): translate with '
                       'beam=False, or export again with --beam_size=4.')
    exported = self.beam if beam else self.greedy
    fixed_batch = self.manifest['batch_size']   # None: any batch size (a symbolic batch dimension)
    if fixed_batch is not None:
      batch_size = int(fixed_batch)
    encoded = [self.source_ids(line) if line.strip() else None for line in lines]
    chosen = [i for i, ids in enumerate(encoded) if ids is not None]
    outputs = [(None, None, None)] * len(lines)
    for start in range(0, len(chosen), batch_size):
      rows = chosen[start:start + batch_size]
      padded = batch_size if fixed_batch is not None else min(_next_power_of_two(len(rows)), batch_size)
      source = np.zeros((padded, self.source_length), np.int32)
      for row, i in enumerate(rows):
        source[row, : len(encoded[i])] = encoded[i]
      result = [np.asarray(x) for x in self._call(exported, source)]
      if not beam:   # greedy: (tokens [B, T], weights [B, T, S]) -> one hypothesis, no score
        result = [result[0][:, None], result[1][:, None], np.full((padded, 1), np.nan, np.float32)]
      for row, i in enumerate(rows):
        outputs[i] = tuple(x[row] for x in result)
    return encoded, outputs

  def _call(self, exported: jax.export.Exported, source: np.ndarray):
    """Runs the exported function on self.device (jit-wrapped, so each batch shape compiles once)."""
    if id(exported) not in self._compiled:
      self._compiled[id(exported)] = jax.jit(exported.call)
    with jax.default_device(self.device):
      return self._compiled[id(exported)](source)
