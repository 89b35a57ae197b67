"""Summarisation: Debian package long descriptions -> one-line synopsis (60,557 pairs from bookworm's Translation-en),
the translation model reused: SentencePiece vocabulary, BiGRU encoder + Bahdanau decoder with additive attention;
documents cut to their first 63 pieces. Reports ROUGE-1/2/L F1 (and BLEU) of greedy outputs.

    python -m experiments.prepare_data --dataset=debian_summaries --data_dir=data    # once, ~40 s (apt-get update)
    python -m experiments.train --config=configs/debian_summaries.py --workdir=workdirs/debian_summaries
    python -m experiments.train --config=configs/debian_summaries.py:general --workdir=workdirs/summaries_general

ARG (optional) picks the scorer. Measured (4,000 steps, ~80 minutes on 2 CPU cores shared with other jobs; the first
1,000 test documents): ROUGE-1 / 2 / L 30.8 / 14.0 / 28.5, BLEU 11.6, exact match 0.03; after 2,000 steps 26.1 /
10.9 / 24.6. For scale, the first 10 words of the document score 30.3 / 14.0 / 27.0 (the best such lead baseline).
"""

from attention_jax.tasks import translation


def get_config(arg=None):
  config = translation.default_config('debian_summaries')
  config.data.tokenizer = 'sentencepiece'
  config.data.vocab_size = 4000
  config.data.max_source_length = 64     # documents are cut to their first 63 pieces (+ EOS)
  config.data.max_target_length = 24     # synopses longer than 23 pieces are left out (~1%)
  config.model.encoder = 'bigru'
  config.model.decoder = 'bahdanau'
  config.model.scorer = arg or 'additive'
  config.model.embed_dim = 128
  config.model.hidden_dim = 128          # per encoder direction; the decoder state too
  config.model.dropout_rate = 0.1
  config.train.batch_size = 64
  config.train.num_steps = 4000
  config.train.learning_rate = 2e-3
  config.train.warmup_steps = 200
  config.train.label_smoothing = 0.1
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.eval.batch_size = 256
  config.eval.max_examples = 1000        # validation and test: the first 1,000 of each split
  config.eval.rouge = True
  config.eval.num_heatmaps = 4
  return config
