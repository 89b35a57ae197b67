"""Summarisation: Debian package long descriptions -> one-line synopsis (60,557 pairs from bookworm's Translation-en),
the translation model reused: SentencePiece vocabulary (one model for documents and synopses), BiGRU encoder +
Bahdanau decoder with additive attention; documents cut to their first 63 pieces. Reports ROUGE-1/2/L F1 (and BLEU),
the share of repeated trigrams and, for the pointer-generator, the copy rate (mean 1 - p_gen) of greedy outputs.

    python -m experiments.prepare_data --dataset=debian_summaries --data_dir=data    # once, ~40 s (apt-get update)
    python -m experiments.train --config=configs/debian_summaries.py --workdir=workdirs/debian_summaries
    python -m experiments.train --config=configs/debian_summaries.py:pointer --workdir=workdirs/debian_summaries_pointer
    python -m experiments.train --config=configs/debian_summaries.py:pointer_coverage \
        --workdir=workdirs/debian_summaries_pointer_coverage       # continues the pointer run, so after it
    python -m experiments.train --config=configs/debian_summaries.py:general --workdir=workdirs/summaries_general

ARG: '' the attention baseline; 'pointer' the pointer-generator (See et al. 2017: copy attention, p_gen); 
'pointer_coverage' that run continued for 1,000 steps with the coverage scorer and the coverage loss (lambda = 1),
coverage switched on for the last part of training as in the paper; 'pointer_continued' the same 1,000 steps
without coverage (the control: does coverage help, or just more steps?); any other ARG picks the baseline's scorer.
Measured on the first 1,000 test documents, greedy (results/debian_summaries_study; 2 Sapphire Rapids cores,
2026-12-05, end to end): baseline ROUGE-1/2/L 30.3 / 13.9 / 28.4, repeated trigrams 2.5% (20.8 min); pointer
36.7 / 18.7 / 34.4, 0.6%, copy rate 0.44 (17.3 min); pointer_coverage 36.1 / 18.0 / 33.4, 0.1% (5.3 min); the best
lead baseline (first 10 words) 30.3 / 14.0 / 27.0. pointer_continued, the control: 37.1 / 18.9 / 34.7, 0.6%
(4.9 min): coverage's drop in repetition is not just more steps.
"""

from attention_jax.tasks import translation

VARIANTS = (None, '', 'pointer', 'pointer_coverage', 'pointer_continued')


def get_config(arg=None):
  config = translation.default_config('debian_summaries')
  config.data.tokenizer = 'sentencepiece'
  config.data.vocab_size = 4000
  config.data.max_source_length = 64     # documents are cut to their first 63 pieces (+ EOS)
  config.data.max_target_length = 24     # synopses longer than 23 pieces are left out (~1%)
  config.model.encoder = 'bigru'
  config.model.decoder = 'bahdanau'
  config.model.scorer = 'additive' if arg in VARIANTS else arg
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
  if arg in ('pointer', 'pointer_coverage', 'pointer_continued'):
    config.model.copy_attention = True
  if arg in ('pointer_coverage', 'pointer_continued'):
    config.train.init_from = 'workdirs/debian_summaries_pointer'    # parameters of the pointer run's best checkpoint
    config.train.num_steps = 1000
    config.train.learning_rate = 5e-4    # a continuation: fresh Adam moments, a quarter of the first stage's rate
    config.train.warmup_steps = 100
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
  if arg == 'pointer_coverage':
    config.model.scorer = 'coverage'     # e_i = v^T tanh(W_s s_t + W_h h_i + w_c c_i + b); w_c and b start fresh
    config.train.coverage_loss_weight = 1.0
  return config
