"""English (King James) -> Spanish (Reina-Valera 1909) Bible verses (31,084 pairs) with word alignments from shared
Strong's numbers, SentencePiece vocabulary, BiLSTM encoder + Luong decoder with general attention.

    python -m experiments.prepare_data --dataset=bible_en_es --data_dir=data       # once, ~1.5 min (apt-get download)
    python -m experiments.train --config=configs/bible_en_es.py --workdir=workdirs/bible_en_es

Sized for a GPU or Colab TPU: about 1 hour on one GPU (an estimate, not yet measured). Expect evaluation to report
BLEU and the alignment error of the attention against the Strong's-number links (the training run itself has not
been measured here).
"""

from configs import messages_en_fr


def get_config(arg=None):
  del arg
  # The message-catalog model and optimiser (BiLSTM 256 + Luong/general, input feeding, beam 4), with a budget
  # sized for 31k verses of ~24 words.
  config = messages_en_fr.get_config('bible_en_es')
  config.train.batch_size = 64
  config.train.num_steps = 30000
  config.train.warmup_steps = 1000
  config.train.eval_every = 3000
  config.eval.batch_size = 256
  config.eval.max_examples = 1000
  return config
