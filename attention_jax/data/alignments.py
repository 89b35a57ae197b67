"""Gold alignments from alignment units onto tokens.

A dataset stores its gold links per example as int32 [K, 2] (target unit, source unit), where a unit is a character
(synthetic tasks) or a whitespace-separated word (Bible). Each token covers the units its UTF-8 byte span touches,
so the links hold for any tokenizer: token_alignment joins a target token and a source token wherever one of their
units is linked.
"""

from __future__ import annotations

import re

import numpy as np

ALIGNMENT_UNITS = ('char', 'word')


def check_unit(unit: str) -> None:
  """Raises ValueError naming the valid alignment units when `unit` is not one of them."""
  if unit not in ALIGNMENT_UNITS:
    raise ValueError(f'Unknown alignment unit {unit!r}. Valid units: {", ".join(ALIGNMENT_UNITS)}.')


def unit_spans(text: str, unit: str) -> np.ndarray:
  """UTF-8 byte spans int [units, 2] of the alignment units of `text`: each character, or each whitespace-separated
  word."""
  check_unit(unit)
  sizes = np.fromiter((len(c.encode('utf-8')) for c in text), np.int64, len(text))
  starts = np.concatenate([[0], np.cumsum(sizes)])             # byte offset of every character (and the end)
  if unit == 'char':
    return np.stack([starts[:-1], starts[1:]], axis=1)
  words = [(m.start(), m.end()) for m in re.finditer(r'\S+', text)]
  return starts[np.asarray(words, np.int64).reshape(-1, 2)]


def token_unit_membership(text: str, token_spans, unit: str) -> np.ndarray:
  """Which alignment units each token covers, bool [tokens, units].

  A token covers every unit that one of its bytes belongs to. A token of whitespace only (SentencePiece's
  bare '▁') takes the units of the token after it, the word it starts.
  """
  spans = unit_spans(text, unit)
  owner = np.full(len(text.encode('utf-8')), -1, np.int64)     # unit of every byte; -1 = whitespace
  for u, (begin, end) in enumerate(spans):
    owner[begin:end] = u
  token_spans = np.asarray(token_spans, np.int64).reshape(-1, 2)
  lengths = np.maximum(token_spans[:, 1] - token_spans[:, 0], 0)
  token_of_byte = np.repeat(np.arange(len(token_spans)), lengths)
  byte = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(token_spans[:, 0],
                                                                                                 lengths)
  members = np.zeros((len(token_spans), len(spans)), bool)
  units = owner[np.clip(byte, 0, max(len(owner) - 1, 0))] if len(owner) else np.zeros(0, np.int64)
  keep = units >= 0
  members[token_of_byte[keep], units[keep]] = True
  for t in range(len(members) - 2, -1, -1):
    if not members[t].any():
      members[t] = members[t + 1]
  return members


def token_alignment(links, target_members, source_members) -> np.ndarray:
  """Token-level gold alignment float32 [target tokens, source tokens].

  Args:
    links: int [K, 2] unit links (target unit, source unit).
    target_members, source_members: bool [tokens, units] from token_unit_membership, or an int number of
      tokens when token i is unit i.

  Returns:
    1.0 where a link joins a unit of the target token to a unit of the source token.
  """
  links = np.asarray(links, np.int64).reshape(-1, 2)
  num_t = target_members if isinstance(target_members, int) else target_members.shape[1]
  num_s = source_members if isinstance(source_members, int) else source_members.shape[1]
  links = links[(links[:, 0] < num_t) & (links[:, 1] < num_s)]
  unit_links = np.zeros((num_t, num_s), np.float32)
  unit_links[links[:, 0], links[:, 1]] = 1.0
  if not isinstance(target_members, int):
    unit_links = target_members.astype(np.float32) @ unit_links
  if not isinstance(source_members, int):
    unit_links = unit_links @ source_members.T.astype(np.float32)
  return (unit_links > 0).astype(np.float32)
