"""Real-corpus comparison of scorers on English -> French software messages, sized for a GPU or Colab TPU.

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once
    python -m experiments.compare --config=configs/compare_messages.py --workdir=workdirs/compare_messages

3 seeds per variant trained together. About 1-2 hours on one GPU (an estimate, not yet measured). No gold
alignments on this corpus, so the report compares BLEU, perplexity, accuracy and exact match by source length.
"""

import ml_collections

from configs import messages_en_fr


def get_config(arg=None):
  del arg
  config = messages_en_fr.get_config()
  config.train.num_steps = 8000
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  config.eval.beam_size = 1
  config.compare = ml_collections.ConfigDict()
  config.compare.seeds = (0, 1, 2)
  config.compare.length_buckets = (5, 10, 20, 30)      # source tokens incl. EOS
  config.compare.num_heatmaps = 3
  config.compare.variants = [
      {'name': 'no_attention', 'decoder': 'none'},
      {'name': 'luong_dot', 'scorer': 'dot'},
      {'name': 'luong_general', 'scorer': 'general'},
      {'name': 'luong_concat', 'scorer': 'concat'},
      {'name': 'luong_location', 'scorer': 'location'},
      {'name': 'bahdanau_additive', 'decoder': 'bahdanau', 'scorer': 'additive'},
  ]
  config.compare.only = ''
  return config
