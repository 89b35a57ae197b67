"""The speech-recognition task: characters from log-mel frames of synthesised speech with a pyramidal BiLSTM
listener and an attention speller (attention_jax.models.listen_attend_spell), content vs location-aware attention.

    config = default_config()                 # configs/speech_espeak.py and configs/speech_espeak_sweep.py
    results = train_and_evaluate(config, workdir)   # {'validation', 'test', 'test_long'}

Loss: the characters' cross-entropy (label smoothing as config.train.label_smoothing) / the number of characters.
Evaluates greedy decoding on held-out voices: character and word error rates and exact utterances on
validation, test, and test_long (phrases about twice as long as any in training). results['test'] also carries
test_long's figures as 'long_cer', 'long_wer', 'long_sentence_accuracy', so a seeded sweep reports both.
Saves heatmaps of the attention over the listener's states (time runs left to right; one listener state covers
frame_stacking x 2^P frames of 10 ms) for the first eval.num_examples_shown utterances of test and test_long
(attention.png is the first long one). Trains through the one loop (training/loop.py): resumable, any parallel mode, multi-process.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.core import FrozenDict

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.data import batching
from attention_jax.data import registry
from attention_jax.data import speech as speech_data
from attention_jax.data import tokenizers
from attention_jax.metrics.recognition import error_rates
from attention_jax.models import listen_attend_spell
from attention_jax.models.listen_attend_spell import ListenAttendSpell
from attention_jax.training import loop
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config
from attention_jax.training.sequence_losses import sequence_metric_sums, summarize_sequence_metrics, token_losses

NAME = 'speech_recognition'
HOP_SECONDS = speech_data.HOP / speech_data.SAMPLE_RATE


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = NAME
  config.seed = 0
  config.data = ml_collections.ConfigDict()
  config.data.name = 'espeak_speech'
  config.data.data_dir = ''                      # '' = the dataset's default (data/espeak_speech)
  config.data.frame_buckets = (128, 192, 256, 384, 512)   # multiples of frame_stacking x 2^pyramid_layers
  config.data.max_chars = 56                     # training targets are cut here (the longest clause has ~50)
  config.model = ml_collections.ConfigDict()
  config.model.decoder = 'bahdanau'
  config.model.scorer = 'location_aware'         # location_aware (Chorowski et al.) | additive (content) | ...
  config.model.scorer_options = {}
  config.model.weighting = 'softmax'
  config.model.listener_dim = 128
  config.model.pyramid_layers = 2
  config.model.frame_stacking = 2                # 2 frames per listener input, then 2 halvings: 8x fewer states
  config.model.embed_dim = 32
  config.model.hidden_dim = 128
  config.model.decoder_cell = 'lstm'
  config.model.dropout_rate = 0.1
  config.train = train_defaults()
  config.train.update(optimizer='adam', learning_rate=1e-3, warmup_steps=0, grad_clip_norm=5.0, batch_size=32,
                      num_steps=3000, log_every=100, eval_every=1000, checkpoint_every=500, keep_checkpoints=2)
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.max_output_length = 128
  config.eval.num_examples_shown = 3
  config.distributed = distributed_defaults()
  return config


def build_model(config) -> ListenAttendSpell:
  m = config.model
  return ListenAttendSpell(vocab_size=speech_data.VOCAB_SIZE, decoder=m.decoder, scorer=m.scorer,
                           scorer_options=FrozenDict(m.scorer_options), weighting=m.weighting,
                           listener_dim=int(m.listener_dim), pyramid_layers=int(m.pyramid_layers),
                           frame_stacking=int(m.frame_stacking),
                           embed_dim=int(m.embed_dim), hidden_dim=int(m.hidden_dim), decoder_cell=m.decoder_cell,
                           dropout_rate=float(m.dropout_rate))


def time_reduction(config) -> int:
  """Frames per listener state of the configured model."""
  return listen_attend_spell.time_reduction(config.model.frame_stacking, config.model.pyramid_layers)


def _example_inputs(config):
  frames = jnp.zeros((1, min(config.data.frame_buckets), speech_data.NUM_MELS + 1)).at[..., -1].set(1.0)
  return frames, jnp.zeros((1, int(config.data.max_chars) + 1), jnp.int32)


def validate_config(config) -> None:
  """Checks a speech config before any data is built; ValueError names the field and the valid values."""
  validate_training_config(config)
  registry.get(config.data.name, kind='speech')
  check_integer_fields(config, (('data', 'max_chars', 1), ('model', 'pyramid_layers', 0),
                                ('model', 'frame_stacking', 1), ('eval', 'max_output_length', 1),
                                ('eval', 'num_examples_shown', 0)))
  factor = time_reduction(config)
  buckets = list(config.data.frame_buckets)
  if not buckets or any(isinstance(b, bool) or int(b) != b or b < 1 or b % factor for b in buckets):
    raise ValueError(f'config.data.frame_buckets={tuple(buckets)} must be positive multiples of '
                     f'frame_stacking x 2^pyramid_layers = {factor}.')
  jax.eval_shape(build_model(config).init, jax.random.key(0), *_example_inputs(config))


def recognition_loss(params, batch: dict, rng, *, train: bool, model, label_smoothing: float):
  """Teacher forcing on {'frames', 'target_in', 'target_out'}: (loss sum, characters, the translation task's
  sequence metric sums: 'loss_sum', 'token_count', 'correct_count', ...)."""
  logits, _ = model.apply({'params': params}, batch['frames'], batch['target_in'], train=train,
                          rngs={'dropout': rng})
  metrics = sequence_metric_sums(logits, batch['target_out'],
                                 token_losses(logits, batch['target_out'], label_smoothing))
  return metrics['loss_sum'], metrics['token_count'], metrics


def recognise(params, model, source, config, limit: int | None = None):
  """(references, hypotheses, attention weights [T, S] per utterance, listener lengths) of greedy decoding."""
  count = len(source) if limit is None else min(limit, len(source))
  subset = [source[i] for i in range(count)]
  references, hypotheses, weights, lengths = [], [], [], []
  factor = time_reduction(config)
  for start in range(0, count, int(config.eval.batch_size)):
    chunk = subset[start:start + int(config.eval.batch_size)]
    frames_needed = batching.padded_length(max(len(e['features']) for e in chunk), config.data.frame_buckets)
    encoded = [speech_data.encode_example(e, max_frames=frames_needed, max_chars=int(config.eval.max_output_length))
               for e in chunk]
    frames = jnp.asarray(np.stack([e['frames'] for e in encoded]))
    decoded, attention = decoding.greedy_decode(model, params, frames, max_length=int(config.eval.max_output_length))
    decoded, attention = np.asarray(decoded), np.asarray(attention)
    for e, example, out, a in zip(encoded, chunk, decoded, attention):
      hypothesis = speech_data.decode_text(out)
      references.append(tokenizers.as_text(example['text']))
      hypotheses.append(hypothesis)
      weights.append(a[:len(hypothesis) + 1])
      lengths.append(-(-int(e['num_frames']) // factor))
  return references, hypotheses, weights, lengths


def evaluate_split(params, model, source, config) -> dict[str, float]:
  references, hypotheses, _, _ = recognise(params, model, source, config)
  return error_rates(references, hypotheses)


def save_heatmaps(params, model, sources, config, workdir: str) -> list[str]:
  paths = []
  factor = time_reduction(config)
  for split in ('test_long', 'test'):
    references, hypotheses, weights, lengths = recognise(params, model, sources[split], config,
                                                         limit=int(config.eval.num_examples_shown))
    for k, (reference, hypothesis, w, length) in enumerate(zip(references, hypotheses, weights, lengths)):
      times = [f'{i * factor * HOP_SECONDS:.1f}' if i % 5 == 0 else '' for i in range(length)]
      path = os.path.join(workdir, 'attention.png' if (split, k) == ('test_long', 0)
                          else os.path.join('attention', f'{split}_{k}.png'))
      paths.append(visualization.plot_attention(
          w[:, :length], times, list(hypothesis) + ['</s>'], path,
          title=f'heard {hypothesis!r}\nsaid  {reference!r} (columns: seconds)'))
  return paths


def train_and_evaluate(config, workdir: str) -> dict[str, dict[str, float]]:
  """Trains the recogniser, evaluates validation / test / test_long, draws heatmaps; returns the results."""
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  sources = speech_data.load(config.data.data_dir or registry.get(config.data.name).data_dir).as_data_source()
  model = build_model(config)
  loss_fn = functools.partial(recognition_loss, model=model, label_smoothing=float(config.train.label_smoothing))
  runner = parallel.Runner(config.train.parallel, functools.partial(steps.train_step, loss_fn=loss_fn))
  state = runner.put_state(steps.create_train_state(model, steps.make_optimizer(config.train), int(config.seed),
                                                    *_example_inputs(config)))
  batches = speech_data.batches(
      sources['train'], batch_size=int(config.train.batch_size), frame_buckets=tuple(config.data.frame_buckets),
      max_chars=int(config.data.max_chars), seed=int(config.seed), process_index=jax.process_index(),
      process_count=jax.process_count())
  params, results = loop.train_then_evaluate(
      state, runner, batches, config.train, workdir, best_metric='cer', best_mode='min',
      summarize=summarize_sequence_metrics, throughput=('token_count', 'characters_per_second'),
      splits=('validation', 'test', 'test_long'),
      on_start=lambda: loop.write_run_config(config, workdir),
      evaluate_split=lambda params, split: evaluate_split(params, model, sources[split], config))
  results['test'].update({f'long_{k}': v for k, v in results['test_long'].items()})
  if is_chief:
    heatmaps = save_heatmaps(params, model, sources, config, workdir)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2)
    print('test: ' + ', '.join(f'{k} {v:.4g}' for k, v in results['test'].items()))
    print(f'heatmaps: {heatmaps[0]} and {len(heatmaps) - 1} more under {os.path.join(workdir, "attention")}',
          flush=True)
  return results
