"""The README demo: date normalisation ('tue 3 jan. 1995' -> '1995-01-03') with a BiGRU encoder and a
Bahdanau decoder with additive attention.

    python -m experiments.train --config=configs/default.py --workdir=workdirs/default

Expect after ~3 minutes on 2 CPU cores: test exact match above 0.9, token accuracy above 0.97, and
attention-argmax accuracy against the gold character alignments around 0.6-0.9 (month names align
to several letters). Heatmaps in workdirs/default/heatmaps.
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  del arg
  config = translation.default_config('date')
  config.data.num_train = 20000
  config.train.num_steps = 1500
  config.train.eval_every = 500
  config.train.checkpoint_every = 250
  return config
