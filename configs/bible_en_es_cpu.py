"""English (King James) -> Spanish (Reina-Valera 1909) Bible verses on 2 CPU cores: the bible_en_es model
(BiLSTM 256 encoder, LSTM Luong decoder with general attention and input feeding) on a budget of 1,200
length-bucketed batches of 64 verses (~2.7 epochs of the 28k training verses).

    python -m experiments.prepare_data --dataset=bible_en_es --data_dir=data       # once, ~1.5 min (apt-get download)
    python -m experiments.train --config=configs/bible_en_es_cpu.py --workdir=workdirs/bible_en_es_cpu \
        --results_dir=results/bible_en_es_cpu

Measured end to end on 2 Sapphire Rapids cores (2026-12-04): 17.3 min (14.2 min of training, then the whole test
split decoded greedily and with beam 4). Test BLEU 15.9 greedy / 19.6 beam 4, chrF 35.1 / 35.2, attention AER
0.738 and argmax accuracy 0.43 against the Strong's-number links (results/bible_en_es_cpu). The earlier AMD EPYC
run, before the fused recurrences (22.0 min): BLEU 16.8 / 20.1, chrF 36.1 / 36.5, AER 0.736: inside the ~1 BLEU
seed spread, one seed each.
"""

from configs import bible_en_es


def get_config(arg=None):
  del arg
  config = bible_en_es.get_config()
  config.train.num_steps = 1200
  config.train.warmup_steps = 200
  config.train.eval_every = 400
  config.train.checkpoint_every = 400
  config.eval.max_examples = 0             # the whole test split
  config.eval.num_heatmaps = 4
  return config
