"""Build a dataset once, explicitly (downloads only from PyPI with pip; nothing at training time).

    python -m experiments.prepare_data --dataset=vader_sentiment --data_dir=data/vader_sentiment
    python -m experiments.prepare_data --dataset=digit_strips --data_dir=data/digit_strips
    python -m experiments.prepare_data --dataset=messages_en_fr --data_dir=data      # apt-get download, needs Debian
    python -m experiments.prepare_data --dataset=date --data_dir=data     # synthetic tasks build on first use anyway
"""

from absl import app
from absl import flags

from attention_jax.data import digit_strips
from attention_jax.data import messages
from attention_jax.data import sentiment
from attention_jax.data import synthetic
from attention_jax.data import translation

DATASETS = ('vader_sentiment', 'digit_strips', *translation.MESSAGE_DATASETS, *synthetic.TASKS)
_DATASET = flags.DEFINE_enum('dataset', None, DATASETS, 'Which dataset to prepare.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Where to build it (default: data/<dataset>, or data for synthetic).')
flags.mark_flag_as_required('dataset')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  name = _DATASET.value
  if name == 'vader_sentiment':
    builder = sentiment.prepare(_DATA_DIR.value or 'data/vader_sentiment')
  elif name == 'digit_strips':
    builder = digit_strips.prepare(_DATA_DIR.value or 'data/digit_strips')
  elif name in translation.MESSAGE_DATASETS:
    builder = messages.prepare(name.rsplit('_', 1)[1], _DATA_DIR.value or 'data')
  else:
    config = translation.default_data_config(name)
    config.data_dir = _DATA_DIR.value or 'data'
    task = translation.make_task(config)
    print({split: len(task.kept_indices(split)) for split in task.splits})
    return
  print({split: info.num_examples for split, info in builder.info.splits.items()}, '->', builder.data_dir)


if __name__ == '__main__':
  app.run(main)
