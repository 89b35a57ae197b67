"""Quick CPU comparison of every scorer (and the no-attention baseline, and a Luong decoder) on string
reversal, 3 seeds trained together per variant, with a length-generalisation split (inputs up to 2x longer).

    python -m experiments.compare --config=configs/compare_quick.py --workdir=results/compare_quick

Also the mechanisms beyond global soft attention: Luong's local-m and local-p (window D = 2), monotonic attention
(which cannot follow reversal's anti-diagonal alignment: a sanity check), See et al.'s coverage loss on the
coverage scorer, and guided alignment to the gold links; config.compare.contrasts states what the papers lead one
to expect and the report says whether it held beyond the seed spread.

Expect every attention variant far above the no-attention baseline on exact match, content scorers aligning
near-perfectly on the anti-diagonal (AER near 0), and large differences on test_long, where `location` cannot
address unseen positions. The committed report is results/compare_quick (its wall time is in the report).

`--config=configs/compare_quick.py:smoke`: three variants, two seeds, 20 steps (the Colab notebook's SMOKE mode).
"""

import ml_collections

from attention_jax.scoring import names
from attention_jax.tasks import translation


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'configs/compare_quick.py takes no argument or ":smoke", got {arg!r}.')
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
  # Beyond global soft attention (attention_jax.models.decoders; training/attention_losses).
  variants += [
      {'name': 'luong_local_m_general', 'decoder': 'luong', 'scorer': 'general', 'locality': 'local_m',
       'local_window': 2},
      {'name': 'luong_local_p_general', 'decoder': 'luong', 'scorer': 'general', 'locality': 'local_p',
       'local_window': 2},
      {'name': 'bahdanau_monotonic', 'scorer': 'additive', 'weighting': 'monotonic'},
      {'name': 'bahdanau_coverage_loss', 'scorer': 'coverage', 'train.coverage_loss_weight': 1.0},
      {'name': 'bahdanau_additive_guided', 'scorer': 'additive', 'train.guided_alignment_weight': 0.1},
  ]
  config.compare.variants = variants
  config.compare.contrasts = [
      {'claim': 'Luong 2015: local-p general ahead of global general (19.0 vs 17.3 BLEU)',
       'a': 'luong_local_p_general', 'b': 'luong_general', 'metric': 'bleu', 'expect': 'a_ahead'},
      {'claim': 'local-p generalises to longer inputs than global general', 'a': 'luong_local_p_general',
       'b': 'luong_general', 'metric': 'long_exact_match', 'expect': 'a_ahead'},
      {'claim': 'local-m (p_t = t) cannot follow a reversed alignment; local-p can', 'a': 'luong_local_p_general',
       'b': 'luong_local_m_general', 'metric': 'exact_match', 'expect': 'a_ahead'},
      {'claim': 'monotonic attention cannot reverse (its alignment only moves forward)', 'a': 'bahdanau_additive',
       'b': 'bahdanau_monotonic', 'metric': 'exact_match', 'expect': 'a_ahead'},
      {'claim': 'Tu 2016: the coverage scorer drops fewer source tokens (lower is better)',
       'a': 'bahdanau_additive', 'b': 'bahdanau_coverage', 'metric': 'long_dropped_units', 'expect': 'a_ahead'},
      {'claim': 'See 2017: the coverage loss repeats fewer tokens (lower is better)', 'a': 'bahdanau_coverage',
       'b': 'bahdanau_coverage_loss', 'metric': 'long_extra_units', 'expect': 'a_ahead'},
      {'claim': 'guided alignment lowers AER (lower is better)', 'a': 'bahdanau_additive',
       'b': 'bahdanau_additive_guided', 'metric': 'aer', 'expect': 'a_ahead'},
      {'claim': '... at equal BLEU', 'a': 'bahdanau_additive', 'b': 'bahdanau_additive_guided', 'metric': 'bleu',
       'expect': 'tie'},
  ]
  config.compare.only = ''                             # comma-separated variant names to run ('' = all)
  if arg == 'smoke':
    config.data.num_train = 512
    config.data.num_eval = 32
    config.eval.batch_size = 32
    config.train.num_steps = 20
    config.train.log_every = 5
    config.train.checkpoint_every = 10
    config.compare.seeds = (0, 1)
    config.compare.only = 'no_attention,bahdanau_additive,luong_general'
  return config
