"""String reversal with location-aware attention, plus the length-generalisation split (inputs up to twice
as long as in training), as in Chorowski et al. 2015.

    python -m experiments.train --config=configs/reverse.py --workdir=workdirs/reverse
    python -m experiments.train --config=configs/reverse.py:additive --workdir=workdirs/reverse_additive

Expect test exact match above 0.9 on training lengths; compare test_long/* between scorers.
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  config = translation.default_config('reverse')
  config.model.scorer = arg or 'location_aware'
  config.train.num_steps = 2000
  return config
