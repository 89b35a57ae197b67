"""Sentiment with attention pooling (Yang et al. 2016) on 23k human-rated sentences (Hutto & Gilbert 2014).

    python -m experiments.prepare_data --dataset=vader_sentiment --data_dir=data/vader_sentiment   # once
    python -m experiments.train --config=configs/sentiment.py --workdir=workdirs/sentiment
    python -m experiments.train --config=configs/sentiment.py:additive --workdir=workdirs/sentiment_additive

Expect ~5 minutes on 2 CPU cores and binary test accuracy around 0.8 (movie-review snippets and NYT editorials
are hardest, tweets easiest); workdirs/sentiment/attention.html shows which words the pooling weighs.
"""

from attention_jax.training.sentiment import sentiment_config


def get_config(arg=None):
  config = sentiment_config()
  config.experiment = 'sentiment'
  if arg:
    config.model.scorer = arg
  return config
