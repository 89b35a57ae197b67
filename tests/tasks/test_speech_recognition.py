"""Speech recognition: log-mel features against numpy written from the definitions, the phrase and voice splits,
the synthesised-speech builder (a fake synthesiser here; espeak-ng itself where installed), error rates, the
listener, and the task end to end."""

import json
import os
import shutil
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import tasks
from attention_jax.data import speech
from attention_jax.metrics.recognition import edit_distance, error_rates
from attention_jax.models.listen_attend_spell import ListenAttendSpell, halve_time
from attention_jax.tasks import speech_recognition
from configs import speech_espeak

VERSES = {
    'train': ['And God said, Let there be light: and there was light.', 'In the beginning God created the heaven.',
              'The LORD is my shepherd; I shall not want.', "Thou shalt not steal. Honour thy father's house."],
    'validation': ['Blessed are the meek: for they shall inherit the earth.'],
    'test': ['Ask, and it shall be given you; seek, and ye shall find.',
             'And darkness was upon the face of the deep waters.'],
}


def fake_synthesise(text, voice, speed, pitch):
  """int16 audio: 40 ms of a tone per character, its frequency set by the character, the voice and the pitch."""
  rate, samples = speech.SAMPLE_RATE, []
  offset = 3.0 * (zlib.crc32(voice.encode()) % 7) + pitch
  for c in text:
    t = np.arange(int(0.04 * rate * 170 / speed)) / rate
    samples.append(0.3 * np.sin(2 * np.pi * (200 + 25 * speech.CHARACTERS.index(c) + offset) * t))
  return (np.concatenate(samples) * 32767).astype(np.int16)


def reference_log_mel(samples, window, hop, rate, num_mels, max_frequency):
  """By the definitions: Hann w[n] = 0.5 - 0.5 cos(2 pi n / (N - 1)); X_k = sum_n x[n] w[n] e^(-2 pi i k n / N);
  HTK mel m(f) = 2595 log10(1 + f / 700); band b a triangle over mel-spaced edges e_b, e_(b+1), e_(b+2)."""
  x = samples / 32768.0
  n = np.arange(window)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (window - 1))
  dft = np.exp(-2j * np.pi * np.outer(np.arange(window // 2 + 1), n) / window)
  to_mel, to_hz = (lambda f: 2595 * np.log10(1 + f / 700)), (lambda m: 700 * (10 ** (m / 2595) - 1))
  edges = [to_hz(to_mel(max_frequency) * i / (num_mels + 1)) for i in range(num_mels + 2)]
  out = []
  for start in range(0, len(x) - window + 1, hop):
    power = np.abs(dft @ (x[start:start + window] * hann)) ** 2
    row = []
    for b in range(num_mels):
      total = 0.0
      for k, p in enumerate(power):
        f = k * rate / window
        if edges[b] < f <= edges[b + 1]:
          total += p * (f - edges[b]) / (edges[b + 1] - edges[b])
        elif edges[b + 1] < f < edges[b + 2]:
          total += p * (edges[b + 2] - f) / (edges[b + 2] - edges[b + 1])
      row.append(np.log(total + 1e-6))
    out.append(row)
  return np.array(out)


def test_log_mel_matches_the_definitions():
  rng = np.random.default_rng(0)
  samples = (rng.standard_normal(700) * 3000).astype(np.int16)
  got = speech.log_mel(samples, window=128, hop=96, rate=8000, num_mels=6)
  want = reference_log_mel(samples, 128, 96, 8000, 6, 4000.0)     # at 8 kHz the bands stop at Nyquist, 4 kHz
  assert got.shape == (1 + (700 - 128) // 96, 6)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_tone_lights_the_band_holding_its_frequency():
  rate = speech.SAMPLE_RATE
  tone = (np.sin(2 * np.pi * 1000.0 * np.arange(rate // 4) / rate) * 10000).astype(np.int16)
  features = speech.log_mel(tone)
  bank = speech.mel_filterbank()
  band = int(np.argmax(bank[int(round(1000.0 * speech.WINDOW / rate))]))
  assert features.shape[1] == speech.NUM_MELS and np.all(np.argmax(features, axis=1) == band)
  assert np.all(bank >= 0) and np.all(bank.max(axis=0) <= 1.0 + 1e-9)


def test_text_normalisation_and_alphabet():
  assert speech.clauses("And God said, Let there be light: and there was light.") == [
      'and god said', 'let there be light', 'and there was light']
  assert speech.normalise("Father\u2019s house (selah)!") == "father's house selah"
  ids = speech.encode_text("thy father's house")
  assert speech.decode_text(np.concatenate([ids, [2, 5, 6]])) == "thy father's house"
  with pytest.raises(ValueError, match=r"Characters \['1'\]"):
    speech.encode_text('psalm 1')


def test_held_out_voices_share_no_accent_or_variant_with_training():
  train = speech.voices_of('train')
  for split in ('validation', 'test', 'test_long'):
    held_out = speech.voices_of(split)
    assert not {a for a, _ in held_out} & {a for a, _ in train}
    assert not {v for _, v in held_out} & {v for _, v in train}


def test_builder_splits_lengths_and_features(tmp_path):
  builder = speech.EspeakSpeech(verses_by_split=lambda: VERSES, synthesise=fake_synthesise,
                                counts={'train': 12, 'validation': 3, 'test': 4, 'test_long': 2},
                                data_dir=str(tmp_path), file_format='array_record')
  builder.download_and_prepare()
  sources = builder.as_data_source()
  assert {k: len(v) for k, v in sources.items()} == {'train': 12, 'validation': 3, 'test': 4, 'test_long': 2}
  pools = speech.phrase_pools(VERSES)
  text = lambda s: s.decode() if isinstance(s, bytes) else s
  for split, source in sources.items():
    for i in range(len(source)):
      example = source[i]
      assert text(example['text']) in pools[split]
      accent, variant = text(example['voice']).split('+')
      assert (accent, variant) in speech.voices_of(split)
      assert example['features'].dtype == np.float16 and example['features'].shape[1] == speech.NUM_MELS
      words = len(text(example['text']).split())
      assert (9 <= words <= 12) if split == 'test_long' else (2 <= words <= 6)
  iterator = speech.batches(sources['train'], batch_size=4, frame_buckets=(64, 128, 256, 512), max_chars=40, seed=0)
  for _ in range(3):
    batch = next(iterator)
    real = batch['num_frames'] > 0                                     # (a bucket's last batch is padded with rows)
    frames_b, chars_b = batch['frames'].shape[1], batch['target_out'].shape[1]
    assert frames_b in (64, 128, 256, 512) and chars_b == min(41, int(np.ceil(frames_b / 4)) + 1)
    assert frames_b >= batch['num_frames'].max() and np.all((batch['target_out'][real] == 2).any(1))   # EOS fits
    np.testing.assert_array_equal(batch['frames'][..., -1].sum(1), batch['num_frames'])
    assert np.all(batch['target_out'][real, 0] >= speech.CHAR_OFFSET)
  # Two processes get the same bucket at every step and their own halves of the global batch.
  halves = [speech.batches(sources['train'], batch_size=4, frame_buckets=(64, 128, 256, 512), max_chars=40, seed=0,
                           process_index=p, process_count=2) for p in (0, 1)]
  whole = speech.batches(sources['train'], batch_size=4, frame_buckets=(64, 128, 256, 512), max_chars=40, seed=0)
  for _ in range(4):
    parts, full = [next(h) for h in halves], next(whole)
    np.testing.assert_array_equal(np.concatenate([p['frames'] for p in parts]), full['frames'])


def test_no_test_phrase_was_heard_in_training_or_validation():
  shared = 'Blessed are the meek: for they shall inherit the earth. I shall not want.'
  verses = {'train': ['I shall not want, said the man.', 'the man said so.'],
            'validation': ['Blessed are the meek: the man said so.'],
            'test': [shared, 'Blessed are the meek, and the man said so.']}
  pools = speech.phrase_pools(verses)
  assert 'i shall not want' in pools['train'] and 'the man said so' in pools['train']
  assert pools['validation'] == ['blessed are the meek']
  # 'blessed are the meek' was heard in validation, 'i shall not want' in training; 'and the man said so' is new.
  assert pools['test'] == ['and the man said so', 'for they shall inherit the earth']


@pytest.mark.skipif(shutil.which('espeak-ng') is None, reason='espeak-ng is not installed (apt-get install espeak-ng)')
def test_espeak_reads_a_phrase():
  samples = speech.espeak_synthesise('let there be light', 'en-us+m3', 170, 50)
  assert samples.dtype == np.int16 and 0.5 < len(samples) / speech.SAMPLE_RATE < 3.0
  assert np.abs(samples).max() > 1000


def test_error_rates_by_hand():
  assert edit_distance('kitten', 'sitting') == 3 and edit_distance('', 'abc') == 3 and edit_distance('ab', 'ab') == 0
  scores = error_rates(['the cat sat', 'a dog'], ['the cat sat', 'a dig'])
  assert scores['cer'] == pytest.approx(1 / 16) and scores['wer'] == pytest.approx(1 / 5)
  assert scores['sentence_accuracy'] == 0.5


def test_listener_halves_time_and_padding_gets_no_attention():
  states = jnp.arange(2 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 3)
  halved, mask = halve_time(states, jnp.asarray([[True] * 8, [True] * 5 + [False] * 3]))
  np.testing.assert_array_equal(np.asarray(halved[0, 1]), np.concatenate([states[0, 2], states[0, 3]]))
  np.testing.assert_array_equal(np.asarray(mask[1]), [True, True, True, False])
  model = ListenAttendSpell(vocab_size=speech.VOCAB_SIZE, listener_dim=4, pyramid_layers=1, frame_stacking=2,
                            hidden_dim=8, embed_dim=4)
  frames = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, speech.NUM_MELS + 1)), jnp.float32)
  frames = frames.at[..., -1].set(1.0).at[1, 9:, -1].set(0.0)              # utterance 1: 9 real frames of 16
  targets = jnp.asarray([[1, 5, 6], [1, 7, 8]])
  params = model.init(jax.random.key(0), frames, targets)['params']
  logits, weights = model.apply({'params': params}, frames, targets)
  assert logits.shape == (2, 3, speech.VOCAB_SIZE) and weights.shape == (2, 3, 4)
  assert np.all(np.asarray(weights[1, :, 3]) == 0)                   # states 12..15 are padding
  # The padded frames' values do not matter.
  noisy = frames.at[1, 9:, :-1].set(100.0)
  np.testing.assert_allclose(np.asarray(model.apply({'params': params}, noisy, targets)[0][1]),
                             np.asarray(logits[1]), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='not a multiple of the time reduction 4'):
    model.apply({'params': params}, frames[:, :10], targets)


@pytest.mark.slow
def test_speech_recognition_trains_end_to_end(tmp_path):
  data_dir = str(tmp_path / 'speech')
  speech.EspeakSpeech(verses_by_split=lambda: VERSES, synthesise=fake_synthesise,
                      counts={'train': 16, 'validation': 4, 'test': 4, 'test_long': 2}, data_dir=data_dir,
                      file_format='array_record').download_and_prepare()
  config = speech_espeak.get_config('smoke')
  config.data.data_dir = data_dir
  workdir = str(tmp_path / 'run')
  results = tasks.run(config, workdir)
  assert {'cer', 'wer', 'long_cer', 'long_wer'} <= set(results['test']) and 'test_long' in results
  assert os.path.getsize(os.path.join(workdir, 'attention.png')) > 1000
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['test']['long_cer'] == results['test']['long_cer']
  config.data.frame_buckets = (30,)
  with pytest.raises(ValueError, match='multiples of frame_stacking x 2\\^pyramid_layers = 4'):
    speech_recognition.validate_config(config)
