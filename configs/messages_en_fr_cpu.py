"""English -> French software messages on 2 CPU cores: the messages_en_fr model (BiLSTM 256 encoder, LSTM Luong
decoder with general attention and input feeding) on a budget of 2,500 length-bucketed batches of 128 pairs.

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once, ~15 s (apt-get download)
    python -m experiments.train --config=configs/messages_en_fr_cpu.py --workdir=workdirs/messages_en_fr_cpu \
        --results_dir=results/messages_en_fr_cpu

Measured on 2 Sapphire Rapids cores (2026-12-04): 18.7 min of training, 20.6 min end to end (validation every
500 steps, test greedy and beam 4, report). Test BLEU 26.7 greedy / 29.7 beam 4, chrF 53.0 / 54.9, exact match
0.11 / 0.11; BLEU falls from 37 on 1-6-piece sources to 15 on 25+ (beam 4). Report:
results/messages_en_fr_cpu/report.md. (The earlier AMD EPYC run, before the fused recurrences: 23 min of training,
BLEU 26.9 / 29.9, chrF 54.0 / 55.8: the same within the ~1 BLEU seed spread.)
"""

from configs import messages_en_fr


def get_config(arg=None):
  del arg
  config = messages_en_fr.get_config()
  config.train.num_steps = 2500            # ~9 epochs of the 36k training pairs
  config.train.warmup_steps = 200
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.eval.max_examples = 0             # the whole test split
  return config
