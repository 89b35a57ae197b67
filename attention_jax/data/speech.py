"""Spoken phrases synthesised offline with espeak-ng, as log-mel features (a tfds builder + bucketed batches), for
attention-based speech recognition.

Text: clauses of the King James Bible's English side (the `bible_en_es` dataset, which must be prepared first),
lower-cased to letters, spaces and apostrophes. The splits follow the Bible's chapter split, and a clause that also
occurs in the training chapters (short clauses recur: 'a psalm of david') is left out of every other split, as is
a test clause that occurs in the validation chapters, so no test phrase was heard in training or used to choose a
checkpoint:
  train, validation, test: clauses of MIN_WORDS..MAX_WORDS words;
  test_long: clauses of LONG_MIN_WORDS..LONG_MAX_WORDS words (about twice as long as in training), which tests
    whether attention keeps its place over longer inputs (Chorowski et al. 2015).
Voices: an espeak-ng accent plus a voice variant, with a random speed (words per minute) and pitch per utterance.
Training voices and the held-out voices of validation/test/test_long share neither accent nor variant, and the
validation voices share neither with the test voices: speaker-disjoint evaluation and checkpoint selection.

Features: log-mel filterbank energies (`log_mel`; numpy, on the host): NUM_MELS bands up to 8 kHz from a Hann
window of WINDOW samples every HOP samples of the 22,050 Hz audio (23 ms / 10 ms), stored as float16 [F, NUM_MELS].

Output characters: PAD 0, BOS 1, EOS 2, then CHARACTERS ('a'-'z', space, apostrophe).

    apt-get install espeak-ng                              # the synthesiser (Debian; brew install espeak-ng on a Mac)
    python -m experiments.prepare_data --dataset=bible_en_es
    python -m experiments.prepare_data --dataset=espeak_speech
"""

from __future__ import annotations

import concurrent.futures
import io
import math
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from attention_jax.data import batching
from attention_jax.data import tokenizers
from attention_jax.special_tokens import BOS_ID, EOS_ID, PAD_ID

SAMPLE_RATE = 22050
WINDOW, HOP, NUM_MELS, MAX_FREQUENCY = 512, 220, 40, 8000.0
CHARACTERS = "abcdefghijklmnopqrstuvwxyz '"
CHAR_OFFSET = EOS_ID + 1
VOCAB_SIZE = CHAR_OFFSET + len(CHARACTERS)
# espeak-ng at the fastest speed drawn (200 words a minute) takes ~5 frames of 10 ms a character: a bucket of F
# frames leaves room for F / 4 characters.
CHARACTERS_PER_FRAME = 0.25
MIN_WORDS, MAX_WORDS = 2, 6
LONG_MIN_WORDS, LONG_MAX_WORDS = 9, 12
TRAIN_ACCENTS = ('en-us', 'en-gb', 'en-gb-scotland', 'en-029')
TRAIN_VARIANTS = ('m1', 'm2', 'm3', 'm4', 'f1', 'f2', 'f4')
HELD_OUT_VOICES = {       # split -> (accent, variant) pairs: no accent or variant of training; validation != test
    'validation': (('en-gb-x-rp', 'm5'), ('en-gb-x-rp', 'f3')),
    'test': (('en-gb-x-gbclan', 'm7'), ('en-gb-x-gbclan', 'f5'), ('en-gb-x-gbcwmd', 'm7'), ('en-gb-x-gbcwmd', 'f5')),
}
HELD_OUT_VOICES['test_long'] = HELD_OUT_VOICES['test']
SPEED_RANGE, PITCH_RANGE = (140, 200), (30, 70)
COUNTS = {'train': 6000, 'validation': 300, 'test': 500, 'test_long': 300}
BIBLE_SPLITS = {'train': 'train', 'validation': 'validation', 'test': 'test', 'test_long': 'test'}
PREPARE_COMMAND = 'python -m experiments.prepare_data --dataset=espeak_speech'

# synthesise(text, voice, speed, pitch) -> int16 samples at SAMPLE_RATE
Synthesiser = Callable[[str, str, int, int], np.ndarray]


def normalise(text: str) -> str:
  """Lower-cased letters, apostrophes and single spaces."""
  return ' '.join(re.sub(r"[^a-z' ]", ' ', text.lower().replace('\u2019', "'")).split())


def clauses(verse: str) -> list[str]:
  """The normalised clauses of a verse (split at , ; : . ? ! and parentheses)."""
  return [c for c in (normalise(part) for part in re.split(r'[,;:.?!()]', verse)) if c]


def phrase_pools(verses_by_split: dict[str, Sequence[str]]) -> dict[str, list[str]]:
  """{split: distinct clauses of the split's word range}, from the verses of each Bible split; a clause found in
  the training verses is in no other pool, one found in the validation verses in no test pool."""
  every = {split: {c for verse in verses for c in clauses(verse)} for split, verses in verses_by_split.items()}
  excluded = {'train': set(), 'validation': every['train'], 'test': every['train'] | every['validation']}
  pools = {}
  for split, bible_split in BIBLE_SPLITS.items():
    low, high = (LONG_MIN_WORDS, LONG_MAX_WORDS) if split == 'test_long' else (MIN_WORDS, MAX_WORDS)
    found = {c for c in every[bible_split] if low <= len(c.split()) <= high} - excluded[bible_split]
    pools[split] = sorted(found)
  return pools


def voices_of(split: str) -> list[tuple[str, str]]:
  if split == 'train':
    return [(accent, variant) for accent in TRAIN_ACCENTS for variant in TRAIN_VARIANTS]
  return list(HELD_OUT_VOICES[split])


def espeak_synthesise(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
  """int16 samples of espeak-ng reading `text` with voice 'accent+variant' (FileNotFoundError without espeak-ng)."""
  binary = shutil.which('espeak-ng')
  if binary is None:
    raise FileNotFoundError('espeak-ng is not installed. Install it (apt-get install espeak-ng; brew install '
                            f'espeak-ng on a Mac), then run: {PREPARE_COMMAND}')
  result = subprocess.run([binary, '-v', voice, '-s', str(speed), '-p', str(pitch), '--stdout', text],
                          capture_output=True, check=True)
  with wave.open(io.BytesIO(result.stdout)) as audio:
    if audio.getframerate() != SAMPLE_RATE or audio.getsampwidth() != 2:
      raise ValueError(f'espeak-ng gave {audio.getframerate()} Hz, {8 * audio.getsampwidth()}-bit audio; '
                       f'expected {SAMPLE_RATE} Hz 16-bit.')
    return np.frombuffer(audio.readframes(audio.getnframes()), np.int16)


def mel_filterbank(num_mels: int = NUM_MELS, window: int = WINDOW, rate: int = SAMPLE_RATE,
                   max_frequency: float = MAX_FREQUENCY) -> np.ndarray:
  """[window // 2 + 1, num_mels] triangular filters equally spaced on the HTK mel scale, 0 Hz .. max_frequency."""
  mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  hertz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  edges = hertz(np.linspace(0.0, mel(max_frequency), num_mels + 2))                    # [M + 2]
  bins = np.arange(window // 2 + 1) * rate / window                                    # bin centre frequencies
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bins[:, None] - lower[None]) / (centre - lower)[None]
  falling = (upper[None] - bins[:, None]) / (upper - centre)[None]
  return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(samples: np.ndarray, *, window: int = WINDOW, hop: int = HOP, rate: int = SAMPLE_RATE,
            num_mels: int = NUM_MELS) -> np.ndarray:
  """[F, num_mels] log(mel energies + 1e-6) of int16 or float samples (scaled to [-1, 1]); F = 1 + (N - window)
  // hop frames of a Hann window (the signal is zero-padded to at least one window); the bands span 0 Hz up to
  MAX_FREQUENCY or the Nyquist frequency rate / 2, whichever is lower."""
  x = np.asarray(samples, np.float64)
  if np.issubdtype(np.asarray(samples).dtype, np.integer):
    x = x / 32768.0
  if len(x) < window:
    x = np.pad(x, (0, window - len(x)))
  count = 1 + (len(x) - window) // hop
  frames = np.lib.stride_tricks.sliding_window_view(x, window)[::hop][:count] * np.hanning(window)
  power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
  bank = mel_filterbank(num_mels, window, rate, min(MAX_FREQUENCY, rate / 2))
  return np.log(power @ bank + 1e-6).astype(np.float32)


def encode_text(text: str) -> np.ndarray:
  """Characters -> ids (ValueError for a character outside CHARACTERS)."""
  unknown = sorted(set(text) - set(CHARACTERS))
  if unknown:
    raise ValueError(f'Characters {unknown} of {text!r} are not in the output alphabet {CHARACTERS!r}.')
  return np.asarray([CHAR_OFFSET + CHARACTERS.index(c) for c in text], np.int32)


def decode_text(tokens) -> str:
  """Output ids -> text (stops at EOS, skips ids that are not characters)."""
  out = []
  for token in np.asarray(tokens).tolist():
    if token == EOS_ID:
      break
    if CHAR_OFFSET <= token < VOCAB_SIZE:
      out.append(CHARACTERS[token - CHAR_OFFSET])
  return ''.join(out)


def generate_utterances(pool: Sequence[str], voices: Sequence[tuple[str, str]], *, count: int, seed: int,
                        synthesise: Synthesiser, workers: int = 4) -> Iterator[dict]:
  """Yields `count` utterances: a seeded draw of phrase, voice, speed and pitch, synthesised `workers` at a time."""
  rng = np.random.default_rng(seed)
  plan = []
  for _ in range(count):
    accent, variant = voices[int(rng.integers(len(voices)))]
    plan.append((pool[int(rng.integers(len(pool)))], f'{accent}+{variant}', int(rng.integers(*SPEED_RANGE)),
                 int(rng.integers(*PITCH_RANGE))))
  with concurrent.futures.ThreadPoolExecutor(workers) as executor:
    audio = executor.map(lambda item: synthesise(*item), plan)
    for (text, voice, speed, pitch), samples in zip(plan, audio):
      yield {'features': log_mel(samples).astype(np.float16), 'text': text, 'voice': voice,
             'speed': np.int32(speed), 'pitch': np.int32(pitch)}


class EspeakSpeech(tfds.core.GeneratorBasedBuilder):
  """Synthesised utterances of Bible clauses (see the module docstring), array_record.

  `verses_by_split`: {'train', 'validation', 'test'} -> English verses (default: read from the prepared
  `bible_en_es` under `bible_dir`). `synthesise`: the synthesiser (default espeak-ng). `counts`: per split.
  """

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, verses_by_split: Callable[[], dict[str, Sequence[str]]] | None = None,
               synthesise: Synthesiser = espeak_synthesise, counts: dict[str, int] | None = None, seed: int = 0,
               **kwargs):
    self._verses, self._synthesise, self._seed = verses_by_split, synthesise, seed
    self._counts = {**COUNTS, **(counts or {})}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description='Bible clauses read by espeak-ng voices, as log-mel features.',
        features=tfds.features.FeaturesDict({
            'features': tfds.features.Tensor(shape=(None, NUM_MELS), dtype=np.float16),
            'text': tfds.features.Text(),
            'voice': tfds.features.Text(),
            'speed': tfds.features.Tensor(shape=(), dtype=np.int32),
            'pitch': tfds.features.Tensor(shape=(), dtype=np.int32),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    pools = phrase_pools(self._verses())
    return {split: self._generate_examples(pools[split], split) for split in COUNTS}

  def _generate_examples(self, pool, split):
    if not pool:
      low, high = (LONG_MIN_WORDS, LONG_MAX_WORDS) if split == 'test_long' else (MIN_WORDS, MAX_WORDS)
      raise ValueError(f'No clause of {low}-{high} words in the verses of split {split!r}: nothing to synthesise.')
    seed = self._seed * 1000 + list(COUNTS).index(split)
    yield from enumerate(generate_utterances(pool, voices_of(split), count=self._counts[split], seed=seed,
                                             synthesise=self._synthesise))


def bible_verses(bible_dir: str) -> Callable[[], dict[str, list[str]]]:
  """A loader of the prepared bible_en_es's English verses per split (FileNotFoundError naming its command)."""
  def load():
    from attention_jax.data import bible          # only when building from the real Bible
    builder = bible.builder(bible_dir)
    if not builder.is_prepared():
      raise FileNotFoundError(f'The phrases come from bible_en_es, which is not prepared in {bible_dir}. Run: '
                              f'{bible.PREPARE_COMMAND} --data_dir={bible_dir}')
    sources = builder.as_data_source()
    return {split: [tokenizers.as_text(source[i]['source']) for i in range(len(source))]
            for split, source in sources.items()}
  return load


def prepare(data_dir: str, *, bible_dir: str = 'data', **options) -> EspeakSpeech:
  """What `experiments.prepare_data --dataset=espeak_speech` runs (needs espeak-ng and the prepared Bible)."""
  espeak_synthesise('test', 'en-us', 170, 50)       # fail before reading anything if espeak-ng is missing
  builder = EspeakSpeech(verses_by_split=bible_verses(bible_dir), data_dir=data_dir, file_format='array_record',
                         **options)
  builder.download_and_prepare()
  return builder


def load(data_dir: str) -> EspeakSpeech:
  builder = EspeakSpeech(data_dir=data_dir, file_format='array_record')
  if not builder.is_prepared():
    raise FileNotFoundError(f'The espeak_speech dataset is not prepared in {data_dir}. Run: {PREPARE_COMMAND} '
                            f'--data_dir={data_dir}')
  return builder


def encode_example(example: dict, *, max_frames: int, max_chars: int) -> dict:
  """-> {'frames' [max_frames, NUM_MELS + 1] (per-utterance normalised log-mels, then a 1/0 validity flag),
  'target_in' / 'target_out' [max_chars + 1], 'num_frames'}; longer inputs are cut."""
  features = np.asarray(example['features'], np.float32)[:max_frames]
  features = (features - features.mean(0)) / (features.std(0) + 1e-5)
  frames = np.zeros((max_frames, NUM_MELS + 1), np.float32)
  frames[:len(features), :NUM_MELS] = features
  frames[:len(features), NUM_MELS] = 1.0
  ids = encode_text(tokenizers.as_text(example['text']))[:max_chars]
  target_out = np.full(max_chars + 1, PAD_ID, np.int32)
  target_out[:len(ids)] = ids
  target_out[len(ids)] = EOS_ID
  target_in = np.full(max_chars + 1, PAD_ID, np.int32)
  target_in[0] = BOS_ID
  target_in[1:len(ids) + 1] = ids
  return {'frames': frames, 'target_in': target_in, 'target_out': target_out, 'num_frames': np.int32(len(features))}


def batches(source, *, batch_size: int, frame_buckets: Sequence[int], max_chars: int, seed: int,
            process_index: int = 0, process_count: int = 1) -> batching.BucketedBatches:
  """Training batches of `batch_size` utterances (global), each padded to one (frames, characters) bucket:
  {'frames' [B, F_b, NUM_MELS + 1], 'target_in', 'target_out' [B, T_b], 'num_frames' [B]}.

  Buckets (attention_jax.data.batching): frame_buckets (utterances longer than the last are cut to it), each with
  room for F_b * CHARACTERS_PER_FRAME characters + EOS, at most max_chars + 1; an utterance goes to the first
  bucket that holds both its frames and its characters; every process gets the same bucket at the same step, its own
  rows of the global batch; the order is seeded per epoch and get_state() / set_state() resume it exactly.
  """
  top = max(frame_buckets)
  batching.check_boundaries(frame_buckets, 'frame_buckets')
  lengths = sorted({int(b) for b in frame_buckets})
  buckets = batching.Buckets(tuple(lengths), tuple(min(max_chars + 1, math.ceil(f * CHARACTERS_PER_FRAME) + 1)
                                                   for f in lengths))
  records = [source[i] for i in range(len(source))]
  frames = [min(len(r['features']), top) for r in records]
  characters = [min(len(tokenizers.as_text(r['text'])), max_chars) + 1 for r in records]
  sizes = batching.batch_sizes(buckets, batch_type='sentences', batch_size=batch_size)
  encode = lambda i, frames_b, chars_b: encode_example(records[i], max_frames=frames_b, max_chars=chars_b - 1)
  return batching.BucketedBatches(encode, buckets.assign(frames, characters), buckets, sizes, seed=seed,
                                  process_index=process_index, process_count=process_count)
