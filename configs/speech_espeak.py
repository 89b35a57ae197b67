"""Attention-based speech recognition on Bible phrases spoken by espeak-ng voices: a pyramidal BiLSTM listener (Chan
et al. 2016) and a Bahdanau speller with location-aware attention (Chorowski et al. 2015), or content-only
(additive) attention; scored on voices never heard in training, and on phrases about twice as long.

    apt-get install espeak-ng
    python -m experiments.prepare_data --dataset=bible_en_es      # the phrases, once
    python -m experiments.prepare_data --dataset=espeak_speech    # ~2 min: 7,100 utterances synthesised
    python -m experiments.train --config=configs/speech_espeak.py --workdir=workdirs/speech
    python -m experiments.train --config=configs/speech_espeak.py:additive --workdir=workdirs/speech_additive

ARG (optional): a scorer name (default location_aware; 'additive' is content-only attention), or 'smoke' (a few
steps at tiny sizes, for tests). Heatmaps of the attention over time: attention.png (a long test phrase) and
attention/. Measured figures and the sweep that produced them: configs/speech_espeak_sweep.py and the README.
"""

from attention_jax.tasks.speech_recognition import default_config


def apply_smoke(config):
  config.model.update(listener_dim=8, hidden_dim=16, embed_dim=8, pyramid_layers=1, dropout_rate=0.0)
  config.data.update(frame_buckets=(32, 64, 128, 256), max_chars=24)
  config.train.update(batch_size=4, num_steps=4, log_every=2, eval_every=4, checkpoint_every=2)
  config.eval.update(batch_size=4, max_output_length=8, num_examples_shown=1)
  return config


def get_config(arg=None):
  config = default_config()
  if arg == 'smoke':
    apply_smoke(config)
  elif arg:
    config.model.scorer = arg
  return config
