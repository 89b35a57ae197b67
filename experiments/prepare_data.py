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
    python -m experiments.prepare_data --dataset=fashion_canvases        # apt-get download (Debian), ~1 min; also
                                                                         # fashion_cluttered
    python -m experiments.prepare_data --dataset=conll2003               # tfds catalog: the internet + TensorFlow
    python -m experiments.prepare_data --dataset=conll2003 --source_file=DIR   # your CoNLL-2003 files, no TensorFlow
    python -m experiments.prepare_data --dataset=espeak_speech           # needs espeak-ng and bible_en_es; ~2 min
    python -m experiments.prepare_data --dataset=date                    # synthetic tasks build on first use anyway

--data_dir defaults to data (data/<dataset> for the sentiment, image, NER and speech datasets). What each dataset
needs, its default directory and the options it takes are in its spec, attention_jax.data.registry.
"""

import os

from absl import app
from absl import flags

from attention_jax.data import registry
from experiments import user_errors

_DATASET = flags.DEFINE_string('dataset', None, 'Which dataset to prepare: ' + ', '.join(registry.names()))
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Where to build it (default: data/<dataset> for the '
                                'sentiment, image, NER and speech datasets, else data).')
_SOURCE_FILE = flags.DEFINE_string('source_file', None, 'debian_summaries: build from this Translation-en file '
                                   '(plain, .xz, .gz, .bz2) instead of fetching it; conll2003: the directory of your '
                                   'CoNLL-2003 files (train.txt, valid.txt, test.txt) instead of the tfds catalog.')
flags.mark_flag_as_required('dataset')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    spec = registry.get(_DATASET.value)
  except ValueError as error:
    raise app.UsageError(f'--dataset: {error}') from None
  options = {'source_file': _SOURCE_FILE.value} if _SOURCE_FILE.value else {}
  for option in options:
    if option not in spec.prepare_options:
      accepting = [name for name, other in registry.DATASETS.items() if option in other.prepare_options]
      raise app.UsageError(f'--{option} is for {", ".join(accepting)} only, not {spec.name!r}.')
  builder = spec.prepare(os.path.expanduser(_DATA_DIR.value or spec.data_dir), **options)
  if builder.info.metadata:      # an unpinned source (debian_summaries): its checksum identifies it
    print('source:', dict(builder.info.metadata))
  print({split: info.num_examples for split, info in builder.info.splits.items()}, '->', builder.data_dir)


if __name__ == '__main__':
  user_errors.run(main)
