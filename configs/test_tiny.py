"""A seconds-long config for tests: tiny model, tiny copy task (exercises the pipeline, does not solve it).

    python -m experiments.train --config=configs/test_tiny.py --workdir=/tmp/tiny

Expect ~20 s on 2 CPU cores (most of it start-up and compilation): 20 steps, validation loss falling from
about 2.1 to 2.0, test exact match 0, two heatmaps in /tmp/tiny/heatmaps.
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  del arg
  config = translation.default_config('copy')
  config.data.num_train = 256
  config.data.num_eval = 32
  config.data.max_length = 5
  config.data.alphabet_size = 5
  config.model.embed_dim = 8
  config.model.hidden_dim = 8
  config.model.scorer_options = {'hidden_dim': 8}
  config.train.batch_size = 16
  config.train.num_steps = 20
  config.train.warmup_steps = 5
  config.train.log_every = 5
  config.train.eval_every = 10
  config.train.checkpoint_every = 5
  config.eval.batch_size = 16
  config.eval.num_heatmaps = 2
  return config
