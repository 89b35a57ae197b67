"""Content (additive) vs location-aware attention (Chorowski et al. 2015) for speech recognition on espeak-ng voices
held out from training, the same listener, speller, data and budget (3,000 steps of 32 utterances, 16 epochs of
the 6,000 training utterances): character error rate on test phrases of 2-6 words and on test_long
phrases of 9-12 words (Chorowski et al.: location-aware attention generalises to longer inputs).

    python -m experiments.prepare_data --dataset=espeak_speech     # once (needs espeak-ng and bible_en_es)
    python -m experiments.seeded_runs --config=configs/speech_espeak_sweep.py --workdir=results/speech_espeak

Measured (results/speech_espeak, seeds 0 and 1, 31-34 min of training a run on 2 Sapphire Rapids cores shared
with other jobs), test CER mean +- std: content 0.261 +- 0.006 on 2-6 words, 0.377 +- 0.013 on 9-12 words;
location-aware 0.271 +- 0.031 and 0.286 +- 0.039: on the long phrases location-aware attention is ahead beyond the
seed spread (Chorowski et al.'s finding), on phrases of training length the two tie.

ARG 'smoke': both variants x 2 seeds of a few steps at tiny sizes (for tests).
"""

from attention_jax.tasks.speech_recognition import default_config
from configs.speech_espeak import apply_smoke


def get_config(arg=None):
  config = default_config()
  config.sweep = dict(
      variants=({'name': 'content', 'scorer': 'additive'}, {'name': 'location_aware', 'scorer': 'location_aware'}),
      seeds=(0, 1),          # a single run takes ~40 min on 2 CPU cores
      metrics=('cer', 'wer', 'sentence_accuracy', 'long_cer', 'long_wer', 'long_sentence_accuracy'),
      contrasts=(
          {'claim': 'Chorowski et al.: location-aware attention generalises to longer utterances (lower CER)',
           'a': 'content', 'b': 'location_aware', 'metric': 'long_cer', 'expect': 'a_ahead'},
          {'claim': 'on utterances as long as in training the two are close', 'a': 'content', 'b': 'location_aware',
           'metric': 'cer', 'expect': 'tie'},
      ),
  )
  if arg == 'smoke':
    apply_smoke(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}. Valid: 'smoke' or none.")
  return config
