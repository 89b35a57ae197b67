"""Build a dataset once, explicitly. Training never downloads: a config whose data is not prepared stops
and names the command below.

    python -m experiments.prepare_data --dataset=bible_en_es             # apt-get download (Debian), ~2-3 min
    python -m experiments.prepare_data --dataset=messages_en_fr          # apt-get download (Debian), ~15 s; _de, _es
    python -m experiments.prepare_data --dataset=debian_summaries        # apt-get update (Debian) or download, ~40 s
    python -m experiments.prepare_data --dataset=debian_summaries --source_file=Translation-en.xz   # a local copy
    python -m experiments.prepare_data --dataset=tfds:ted_hrlr_translate/pt_to_en   # tfds catalog, needs the internet
    python -m experiments.prepare_data --dataset=vader_sentiment         # pip download (PyPI)
    python -m experiments.prepare_data --dataset=digit_strips            # from scikit-learn's wheel (PyPI)
    python -m experiments.prepare_data --dataset=fashion_strips          # apt-get download (Debian), ~1 min
    python -m experiments.prepare_data --dataset=date                    # synthetic tasks build on first use anyway

--data_dir defaults to data (data/<dataset> for vader_sentiment, digit_strips and fashion_strips).
"""

from absl import app
from absl import flags

from attention_jax.data import bible
from attention_jax.data import config as data_config_lib
from attention_jax.data import digit_strips
from attention_jax.data import messages
from attention_jax.data import sentiment
from attention_jax.data import summaries
from attention_jax.data import synthetic
from attention_jax.data import translation

APPLICATION_DATASETS = ('vader_sentiment', 'digit_strips', 'fashion_strips')
_DATASET = flags.DEFINE_string(
    'dataset', None, 'Which dataset to prepare: ' + ', '.join(APPLICATION_DATASETS) + ', '
    + data_config_lib.VALID_NAMES_TEXT)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Where to build it (default: data/<dataset> for '
                                'vader_sentiment, digit_strips and fashion_strips, else data).')
_SOURCE_FILE = flags.DEFINE_string('source_file', None, 'debian_summaries only: build from this Translation-en file '
                                   '(plain, .xz, .gz, .bz2) instead of fetching it.')
flags.mark_flag_as_required('dataset')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  name = _DATASET.value
  if name not in APPLICATION_DATASETS and name not in data_config_lib.DATASETS:
    raise app.UsageError(f'Unknown --dataset={name!r}. Valid datasets: {", ".join(APPLICATION_DATASETS)}, '
                         f'{data_config_lib.VALID_NAMES_TEXT}.')
  data_dir = _DATA_DIR.value or 'data'
  if _SOURCE_FILE.value and name not in data_config_lib.SUMMARY_DATASETS:
    raise app.UsageError(f'--source_file is for {", ".join(data_config_lib.SUMMARY_DATASETS)} only, not {name!r}.')
  if name == 'vader_sentiment':
    builder = sentiment.prepare(_DATA_DIR.value or 'data/vader_sentiment')
  elif name == 'digit_strips':
    builder = digit_strips.prepare(_DATA_DIR.value or 'data/digit_strips')
  elif name == 'fashion_strips':
    builder = digit_strips.prepare(_DATA_DIR.value or 'data/fashion_strips', source='fashion_mnist')
  elif name in data_config_lib.MESSAGE_DATASETS:
    builder = messages.prepare(name.rsplit('_', 1)[1], data_dir)
  elif name in data_config_lib.BIBLE_DATASETS:
    builder = bible.prepare(data_dir)
  elif name in data_config_lib.SUMMARY_DATASETS:
    builder = summaries.prepare(data_dir, _SOURCE_FILE.value)
    print('source:', dict(builder.info.metadata))     # the index is not pinned: its checksum identifies it
  elif name.startswith(data_config_lib.TFDS_PREFIX):
    builder = translation.prepare_tfds_catalog(name[len(data_config_lib.TFDS_PREFIX):], data_dir)
  else:
    assert name in synthetic.TASKS
    config = data_config_lib.default_data_config(name)
    task = translation.make_task(config, data_dir=data_dir)
    print({split: len(task.kept_indices(split)) for split in task.splits})
    return
  print({split: info.num_examples for split, info in builder.info.splits.items()}, '->', builder.data_dir)


if __name__ == '__main__':
  app.run(main)
