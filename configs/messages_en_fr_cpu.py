"""English -> French software messages on 2 CPU cores: the messages_en_fr model (BiLSTM 256 encoder, LSTM Luong
decoder with general attention and input feeding) on a budget of 2,500 length-bucketed batches of 128 pairs.

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once, ~15 s (apt-get download)
    python -m experiments.train --config=configs/messages_en_fr_cpu.py --workdir=workdirs/messages_en_fr_cpu \
        --results_dir=results/messages_en_fr_cpu

Measured on 2 cores of an AMD EPYC: 23 min of training, ~26 min end to end (validation every 500 steps, test
greedy and beam 4, report). Test BLEU 26.9 greedy / 29.9 beam 4, chrF 54.0 / 55.8, exact match 0.11 / 0.12;
BLEU falls from 38 on 1-6-piece sources to 14 on 25+ (beam 4). Report: results/messages_en_fr_cpu/report.md.
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
