"""English -> French software messages (~40k pairs from gettext catalogs of pinned Debian packages), SentencePiece
vocabulary, BiLSTM encoder + Luong decoder with general attention and input feeding.

    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data     # once, ~15 s (apt-get download)
    python -m experiments.train --config=configs/messages_en_fr.py --workdir=workdirs/messages_en_fr

Sized for a GPU or Colab TPU (~20 minutes on one GPU); on 2 CPU cores use --config.train.num_steps=3000 for a
first result. Expect validation perplexity to fall below ~10 and test BLEU in the 20s-30s after the full budget.
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  config = translation.default_config(arg or 'messages_en_fr')
  config.data.vocab_size = 8000
  config.model.encoder = 'bilstm'
  config.model.decoder_cell = 'lstm'
  config.model.decoder = 'luong'
  config.model.scorer = 'general'
  config.model.embed_dim = 256
  config.model.hidden_dim = 256
  config.model.dropout_rate = 0.2
  config.train.batch_size = 128
  config.train.num_steps = 20000
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 500
  config.train.label_smoothing = 0.1
  config.train.eval_every = 2000
  config.train.checkpoint_every = 1000
  config.eval.batch_size = 512
  config.eval.max_examples = 2000
  config.eval.beam_size = 4
  return config
