"""Read strips of 3-5 handwritten digits left to right with spatial soft attention (Show, Attend and Tell style)
over a small CNN's feature grid. Test strips use only source images never seen in training.

    python -m experiments.prepare_data --dataset=digit_strips --data_dir=data/digit_strips   # once
    python -m experiments.train --config=configs/digit_strips.py --workdir=workdirs/digits

Measured on 2 CPU cores (Intel Sapphire Rapids, shared with other jobs; 2026-12-05; results/digit_strips): 5.4
minutes end to end, test digit accuracy 0.994 and whole-strip accuracy 0.975; the attention sweeps left to right,
its peak inside the columns of the digit being read for 36% of the steps (it often sits on the boundary with the
next digit; 42% in an earlier AMD EPYC run); overlays in workdirs/digits/overlays.
"""

from attention_jax.tasks.digit_strips import default_config


def get_config(arg=None):
  config = default_config()
  if arg:
    config.model.scorer = arg
  return config
