"""Luong-style global attention (general scorer, input feeding) on date normalisation.

    python -m experiments.train --config=configs/luong.py --workdir=workdirs/luong
    python -m experiments.train --config=configs/luong.py --workdir=workdirs/luong_dot --config.model.scorer=dot

Expect results close to configs/default.py (test exact match above 0.9 after ~3 minutes on 2 CPU cores).
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  del arg
  config = translation.default_config('date')
  config.model.decoder = 'luong'
  config.model.scorer = 'general'
  config.model.input_feeding = True
  config.train.num_steps = 1500
  config.train.checkpoint_every = 250
  return config
