"""Tokenizers of the translation datasets: characters (synthetic tasks) and SentencePiece (real corpora), how they
are learnt from training texts, and how a run directory keeps them.

Both kinds reserve ids 0-3 for PAD, BOS, EOS and UNK (attention_jax.special_tokens), and have the same interface:

    tokenizer.encode('text') -> [ids]          tokenizer.decode(ids) -> 'text' (stops at EOS)
    tokenizer.vocab_size                        tokenizer.tokens(ids) -> display labels (heatmap axes)
    tokenizer.encode_with_offsets('text') -> ([ids], [(begin, end)])   UTF-8 byte span of every token
    tokenizer.to_json() / tokenizer_from_json(data);  save_tokenizers(dir, ...) / load_tokenizers(dir)
    train_tokenizer(kind, texts, ...)           every character of the texts, or a SentencePiece model (cached)

A run directory keeps the tokenizers in vocab.json, so translate/evaluate reproduce the tokenisation.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from attention_jax.special_tokens import BOS_ID, EOS_ID, FIRST_TOKEN_ID, PAD_ID, SPECIAL_SYMBOLS, UNK_ID
from attention_jax.special_tokens import WORD_SPECIAL_SYMBOLS, WORD_UNK_ID

VOCAB_FILE = 'vocab.json'


def as_text(value) -> str:
  """A tfds Text feature's value as str (data sources give UTF-8 bytes)."""
  return value.decode() if isinstance(value, bytes) else str(value)


class CharTokenizer:
  """Character-level tokenizer: ids 0-3 are PAD, BOS, EOS, UNK, then the characters in the given order."""

  def __init__(self, characters: str):
    if len(set(characters)) != len(characters):
      raise ValueError('CharTokenizer characters must be unique.')
    self.characters = characters
    self._index = {c: i + FIRST_TOKEN_ID for i, c in enumerate(characters)}

  @property
  def vocab_size(self) -> int:
    return FIRST_TOKEN_ID + len(self.characters)

  def encode(self, text: str) -> list[int]:
    return [self._index.get(c, UNK_ID) for c in text]

  def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and the UTF-8 byte span of each token (one character each)."""
    spans, at = [], 0
    for c in text:
      size = len(c.encode('utf-8'))
      spans.append((at, at + size))
      at += size
    return self.encode(text), spans

  def decode(self, ids: Sequence[int]) -> str:
    """Stops at EOS; drops PAD/BOS; UNK shows as '?'."""
    out = []
    for i in np.asarray(ids).tolist():
      if i == EOS_ID:
        break
      if i >= FIRST_TOKEN_ID:
        out.append(self.characters[i - FIRST_TOKEN_ID])
      elif i == UNK_ID:
        out.append('?')
    return ''.join(out)

  def tokens(self, ids: Sequence[int]) -> list[str]:
    """One display label per id (for heatmap axes), up to and including EOS."""
    labels = []
    for i in np.asarray(ids).tolist():
      if i == PAD_ID:
        break
      labels.append(SPECIAL_SYMBOLS[i] if i < FIRST_TOKEN_ID else self.characters[i - FIRST_TOKEN_ID])
      if i == EOS_ID:
        break
    return labels

  def to_json(self) -> dict:
    return {'type': 'char', 'characters': self.characters}

  @classmethod
  def from_json(cls, data: dict) -> CharTokenizer:
    if data.get('type') != 'char':
      raise ValueError(f'Not a character vocabulary: {data.get("type")!r}.')
    return cls(data['characters'])


class SentencePieceTokenizer:
  """A SentencePiece (unigram) model with ids 0-3 = PAD, BOS, EOS, UNK."""

  def __init__(self, model_proto: bytes):
    import sentencepiece   # only SentencePiece tasks need it
    self._proto = model_proto
    self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int, path: str) -> SentencePieceTokenizer:
    """Trains on `texts` once and caches the model at `path`; later calls load the cached model.

    Deterministic: one thread, the input in the given order, no sampling of sentences.
    """
    if not os.path.exists(path):
      import sentencepiece
      model = io.BytesIO()
      sentencepiece.SentencePieceTrainer.train(
          sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type='unigram',
          pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, character_coverage=1.0, num_threads=1,
          hard_vocab_limit=False, minloglevel=2, shuffle_input_sentence=False)
      os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
      with open(path + '.tmp', 'wb') as f:
        f.write(model.getvalue())
      os.replace(path + '.tmp', path)     # atomic, so a killed run never leaves half a model in the cache
    with open(path, 'rb') as f:
      return cls(f.read())

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and the UTF-8 byte span of each piece in `text` (a leading '▁' piece spans its space)."""
    proto = self._processor.encode(text, out_type='proto')
    return [p.id for p in proto.pieces], [(p.begin, p.end) for p in proto.pieces]

  def decode(self, ids: Sequence[int]) -> str:
    """Stops at EOS; drops PAD and BOS."""
    ids = np.asarray(ids).tolist()
    if EOS_ID in ids:
      ids = ids[: ids.index(EOS_ID)]
    return self._processor.decode([i for i in ids if i >= UNK_ID])

  def tokens(self, ids: Sequence[int]) -> list[str]:
    """One display label per id (for heatmap axes), up to and including EOS."""
    labels = []
    for i in np.asarray(ids).tolist():
      if i == PAD_ID:
        break
      labels.append(SPECIAL_SYMBOLS[i] if i < FIRST_TOKEN_ID else self._processor.id_to_piece(i))
      if i == EOS_ID:
        break
    return labels

  def to_json(self) -> dict:
    return {'type': 'sentencepiece', 'model': base64.b64encode(self._proto).decode('ascii')}

  @classmethod
  def from_json(cls, data: dict) -> SentencePieceTokenizer:
    if data.get('type') != 'sentencepiece':
      raise ValueError(f'Not a SentencePiece vocabulary: {data.get("type")!r}.')
    return cls(base64.b64decode(data['model']))


TOKENIZERS = {'char': CharTokenizer, 'sentencepiece': SentencePieceTokenizer}


def tokenizer_from_json(data: dict):
  """A CharTokenizer or SentencePieceTokenizer from its to_json() form."""
  kind = data.get('type')
  if kind not in TOKENIZERS:
    raise ValueError(f'Unknown tokenizer type {kind!r}. Valid types: {", ".join(TOKENIZERS)}.')
  return TOKENIZERS[kind].from_json(data)


def check_kind(kind: str) -> None:
  """Raises ValueError naming the valid tokenizer kinds when `kind` is not one of them."""
  if kind not in TOKENIZERS:
    raise ValueError(f'Unknown tokenizer {kind!r}. Valid tokenizers: {", ".join(TOKENIZERS)}.')


def train_tokenizer(kind: str, texts: Iterable[str], *, vocab_size: int, cache_dir: str, cache_tag: str = ''):
  """A tokenizer learnt from `texts` (the source and target texts of a training split).

  Args:
    kind: 'char': every character of the texts, sorted (others map to UNK); 'sentencepiece': one model shared by
      source and target, trained once and cached as <cache_dir>/sentencepiece_<vocab_size><cache_tag>.model.
    texts: read once (SentencePiece: only when the model is not cached yet).
    vocab_size: SentencePiece pieces (ignored for 'char').
    cache_dir, cache_tag: where the SentencePiece model is cached; the tag names what it was trained on.
  """
  check_kind(kind)
  if kind == 'char':
    characters = set()
    for text in texts:
      characters.update(text)
    return CharTokenizer(''.join(sorted(characters)))
  return SentencePieceTokenizer.train(texts, vocab_size,
                                      os.path.join(cache_dir, f'sentencepiece_{vocab_size}{cache_tag}.model'))


def save_tokenizers(directory: str, source_tokenizer, target_tokenizer, max_source_length: int,
                    max_target_length: int) -> str:
  """Writes <directory>/vocab.json (both tokenizers and the padded lengths S, T); returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, VOCAB_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump({'source': source_tokenizer.to_json(), 'target': target_tokenizer.to_json(),
               'max_source_length': int(max_source_length), 'max_target_length': int(max_target_length)}, f)
  os.replace(path + '.tmp', path)
  return path


def load_tokenizers(directory: str) -> tuple:
  """(source tokenizer, target tokenizer, S, T) as written by save_tokenizers."""
  path = os.path.join(directory, VOCAB_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'No {VOCAB_FILE} in {directory}: not a run directory of a translation task.')
  with open(path) as f:
    data = json.load(f)
  return (tokenizer_from_json(data['source']), tokenizer_from_json(data['target']),
          data['max_source_length'], data['max_target_length'])


class WordVocabulary:
  """Word <-> id map built from training texts: WORD_PAD_ID 0, WORD_UNK_ID 1, then the words by frequency.

  A subclass says how a text becomes words (`tokenize`, a static method): sentiment's lower-cased words and
  punctuation, NER's given tokens lower-cased. encode(text) -> [ids]; save(path) / load(path) keep the words.
  """

  @staticmethod
  def tokenize(text) -> list[str]:
    raise NotImplementedError('A WordVocabulary subclass defines tokenize(text) -> words.')

  def __init__(self, words: Sequence[str]):
    self.words = list(WORD_SPECIAL_SYMBOLS) + [w for w in words if w not in WORD_SPECIAL_SYMBOLS]
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, texts: Iterable, *, min_count: int = 2, max_size: int = 20000):
    """The words of `texts` seen at least min_count times, most frequent first, at most max_size ids in all."""
    counts = collections.Counter(token for text in texts for token in cls.tokenize(text))
    frequent = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return cls(frequent[: max_size - len(WORD_SPECIAL_SYMBOLS)])

  @property
  def size(self) -> int:
    return len(self.words)

  def encode(self, text) -> list[int]:
    return [self.index.get(token, WORD_UNK_ID) for token in self.tokenize(text)]

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump(self.words[len(WORD_SPECIAL_SYMBOLS):], f)

  @classmethod
  def load(cls, path: str):
    with open(path) as f:
      return cls(json.load(f))
