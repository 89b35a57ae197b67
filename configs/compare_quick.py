"""Quick CPU comparison of every scorer (and the no-attention baseline, and a Luong decoder) on string
reversal, 3 seeds trained together per variant, with a length-generalisation split (inputs up to 2x longer).

    python -m experiments.compare --config=configs/compare_quick.py --workdir=results/compare_quick

About 10 minutes on 2 CPU cores. Expect every attention variant far above the no-attention baseline on exact
match, content scorers aligning near-perfectly on the anti-diagonal (AER near 0), and large differences on
test_long, where `location` cannot address unseen positions. The committed report is results/compare_quick.
"""

import ml_collections

from attention_jax.scoring import names
from attention_jax.tasks import translation


def get_config(arg=None):
  del arg
  config = translation.default_config('reverse')
  config.data.num_train = 10000
  config.data.num_eval = 300
  config.data.max_length = 8
  config.data.alphabet_size = 8
  config.model.embed_dim = 16
  config.model.hidden_dim = 32
  config.model.scorer_options = {}
  config.train.batch_size = 64
  config.train.num_steps = 600
  config.train.learning_rate = 5e-3
  config.train.log_every = 50
  config.train.checkpoint_every = 200
  config.eval.batch_size = 300
  config.compare = ml_collections.ConfigDict()
  config.compare.seeds = (0, 1, 2)                     # trained together in one vmapped step
  config.compare.length_buckets = (4, 6, 9, 13)       # source lengths (incl. EOS) for exact-match buckets
  config.compare.num_heatmaps = 3                      # the same test examples for every variant
  variants = [{'name': 'no_attention', 'decoder': 'none'}]
  variants += [{'name': f'bahdanau_{scorer}', 'scorer': scorer} for scorer in names()]
  variants += [{'name': 'luong_general', 'decoder': 'luong', 'scorer': 'general'}]
  config.compare.variants = variants
  config.compare.only = ''                             # comma-separated variant names to run ('' = all)
  return config
