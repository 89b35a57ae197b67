"""Named-entity recognition on CoNLL-2003 (English): a BiLSTM tagger with self-attention over the sentence, or the
same BiLSTM without it.

    python -m experiments.prepare_data --dataset=conll2003                    # tfds catalog: internet + TensorFlow
    python -m experiments.prepare_data --dataset=conll2003 --source_file=DIR  # or your copy of the CoNLL files
    python -m experiments.train --config=configs/ner_conll2003.py --workdir=workdirs/ner
    python -m experiments.train --config=configs/ner_conll2003.py:none --workdir=workdirs/ner_bilstm

ARG (optional): 'none' (no attention: the BiLSTM baseline), a scorer name (e.g. 'scaled_dot', 'additive'), or
'smoke' (a few steps at tiny sizes, for tests). Reports entity-level F1 overall and per type (conlleval
conventions) and draws which words informed each tag (attention.png). It is not yet measured: no CoNLL-2003 copy can
be had offline on the machines this project is measured on, so no figure exists for this config.
"""

from attention_jax.tasks.ner import default_config


def get_config(arg=None):
  config = default_config()
  if arg == 'none':
    config.model.attention = 'none'
  elif arg == 'smoke':
    config.model.update(embed_dim=8, case_dim=2, hidden_dim=8, dropout_rate=0.0)
    config.data.bucket_lengths = (8, 16)
    config.train.update(batch_size=4, num_steps=6, log_every=3, eval_every=6, checkpoint_every=3)
    config.eval.update(batch_size=8, num_examples_shown=2)
  elif arg:
    config.model.scorer = arg
  return config
