"""Real-corpus comparison of scorers on English -> French software messages, sized for a GPU or Colab TPU: the
variants and the papers' contrasts of configs/compare_messages_cpu.py (no attention; Luong dot, general, concat,
location, general without input feeding, local-p general; Bahdanau additive) on the full messages_en_fr model
(BiLSTM 256, 8,000-piece vocabulary) for 8,000 steps.

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once
    python -m experiments.compare --config=configs/compare_messages.py --workdir=workdirs/compare_messages

3 seeds per variant trained together. About 1-2 hours on one GPU (an estimate, not measured). No gold alignments
on this corpus, so the report compares BLEU, chrF, perplexity, accuracy and exact match by source length.
"""

import copy

from configs import compare_messages_cpu
from configs import messages_en_fr


def get_config(arg=None):
  del arg
  config = messages_en_fr.get_config()
  config.train.num_steps = 8000
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  config.eval.beam_size = 1
  config.compare = copy.deepcopy(compare_messages_cpu.get_config().compare)
  config.compare.length_buckets = (5, 10, 20, 30)      # source pieces incl. EOS (8,000 pieces: shorter sources)
  return config
