"""English (King James) -> Spanish (Reina-Valera 1909) Bible verses (31,084 pairs) with word alignments from shared
Strong's numbers, SentencePiece vocabulary, BiLSTM encoder + Luong decoder with general attention.

    python -m experiments.prepare_data --dataset=bible_en_es --data_dir=data       # once, ~1.5 min (apt-get download)
    python -m experiments.train --config=configs/bible_en_es.py --workdir=workdirs/bible_en_es

Sized for a GPU or Colab TPU: about 1 hour on one GPU (an estimate, not yet measured). Expect evaluation to report
BLEU and the alignment error of the attention against the Strong's-number links (the training run itself has not
been measured here).
"""

from attention_jax.training.config import translation_config


def get_config(arg=None):
  del arg
  config = translation_config('bible_en_es')
  config.data.tokenizer = 'sentencepiece'
  config.data.vocab_size = 8000
  config.model.encoder = 'bilstm'
  config.model.decoder_cell = 'lstm'
  config.model.decoder = 'luong'
  config.model.scorer = 'general'
  config.model.embed_dim = 256
  config.model.hidden_dim = 256
  config.model.dropout_rate = 0.2
  config.train.batch_size = 64
  config.train.num_steps = 30000
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 1000
  config.train.label_smoothing = 0.1
  config.train.eval_every = 3000
  config.train.checkpoint_every = 1000
  config.eval.batch_size = 256
  config.eval.max_examples = 1000
  config.eval.beam_size = 4
  return config
