"""Scorer comparison on English -> French software messages, sized for 2 CPU cores: no attention; Luong decoder
with dot, general, concat, location; Luong general without input feeding; Luong local-p general; Bahdanau with
additive. 3 seeds per variant trained together (vmapped), the same batches for all, the same budget for all (not
tuned per variant).

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once, ~15 s (apt-get download)
    python -m experiments.compare --config=configs/compare_messages_cpu.py --workdir=results/compare_messages_cpu

The model is the messages_en_fr one at half width (BiLSTM 128 encoder, LSTM 128 decoder, embeddings 128) over
a 2,000-piece SentencePiece vocabulary, trained 900 batches of 128 (~3 epochs) at a higher learning rate.
Measured: 70.9 min for the whole sweep on 2 Sapphire Rapids cores (7.8-10.1 min a variant; 94.5 min on 2 AMD
EPYC cores). Test BLEU over 3 seeds from 6.7 (no attention), 6.9 (local-p general) and 9.8 (location) to
16.6-17.8 (Luong dot, general, concat, general without input feeding: tied within the seed spreads) and 14.8
(Bahdanau additive). The findings against
Luong et al. 2015 and Bahdanau et al. 2015: the committed report, results/compare_messages_cpu/report.md. On
several devices (a Colab TPU) the seed axis is spread over the device mesh (parallel.Runner, mode 'sharded').
"""

import ml_collections

from configs import messages_en_fr


def get_config(arg=None):
  del arg
  config = messages_en_fr.get_config()
  config.data.vocab_size = 2000
  config.data.bucket_boundaries = (8, 12, 16, 24, 32)   # source pieces incl. EOS (2,000 pieces: longer than 8,000)
  config.model.embed_dim = 128
  config.model.hidden_dim = 128
  config.model.dropout_rate = 0.1
  config.train.num_steps = 900            # ~3 epochs of the 36k training pairs, batches of 128
  config.train.learning_rate = 3e-3
  config.train.warmup_steps = 100
  config.train.log_every = 100
  config.train.checkpoint_every = 300
  config.eval.beam_size = 1               # greedy decoding for every variant
  config.eval.max_examples = 0            # the whole test split
  config.compare = ml_collections.ConfigDict()
  config.compare.seeds = (0, 1, 2)
  config.compare.length_buckets = (8, 12, 20)     # source pieces incl. EOS: ~35%, 25%, 28%, 12% of the test split
  config.compare.num_heatmaps = 3
  config.compare.variants = [
      {'name': 'no_attention', 'decoder': 'none'},
      {'name': 'luong_dot', 'scorer': 'dot'},
      {'name': 'luong_general', 'scorer': 'general'},
      {'name': 'luong_concat', 'scorer': 'concat'},
      {'name': 'luong_location', 'scorer': 'location'},
      {'name': 'luong_general_no_feed', 'scorer': 'general', 'input_feeding': False},
      {'name': 'bahdanau_additive', 'decoder': 'bahdanau', 'scorer': 'additive'},
      # Luong's best WMT'14 row (Table 4): local-p general. D = 5 here: Luong's D = 10 is a third of a WMT
      # sentence, and these sources are ~3x shorter.
      {'name': 'luong_local_p_general', 'scorer': 'general', 'locality': 'local_p', 'local_window': 5},
  ]
  config.compare.contrasts = [
      {'claim': 'Luong 2015: dot and general close', 'a': 'luong_general', 'b': 'luong_dot', 'metric': 'bleu',
       'expect': 'tie'},
      {'claim': 'Luong 2015: location behind general', 'a': 'luong_general', 'b': 'luong_location',
       'metric': 'bleu', 'expect': 'a_ahead'},
      {'claim': 'Luong 2015: concat weak', 'a': 'luong_general', 'b': 'luong_concat', 'metric': 'bleu',
       'expect': 'a_ahead'},
      {'claim': 'Luong 2015: input feeding helps (+1.3 BLEU)', 'a': 'luong_general', 'b': 'luong_general_no_feed',
       'metric': 'bleu', 'expect': 'a_ahead'},
      {'claim': 'Bahdanau 2015: attention beats none', 'a': 'bahdanau_additive', 'b': 'no_attention',
       'metric': 'bleu', 'expect': 'a_ahead'},
      {'claim': 'Bahdanau 2015: the gain of attention grows with length', 'a': 'bahdanau_additive',
       'b': 'no_attention', 'metric': 'bleu', 'growth': True, 'expect': 'a_ahead'},
      {'claim': 'Luong 2015: local-p general ahead of global general (19.0 vs 17.3 BLEU)',
       'a': 'luong_local_p_general', 'b': 'luong_general', 'metric': 'bleu', 'expect': 'a_ahead'},
  ]
  config.compare.only = ''
  return config
