"""Train each variant of a config with several seeds (one run after another, any task) and write a report.

    python -m experiments.seeded_runs --config=configs/sentiment_pooling.py --workdir=results/sentiment_pooling

The runs go to <workdir>/runs/ (checkpoints; not committed); report.md, results.json, config.json and each
variant's attention view go to the workdir. Rerunning reads finished runs back and resumes an unfinished one.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from attention_jax.studies.seeded_runs import run_seeded_variants
from experiments import start_jax
from experiments import user_errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file with a sweep group.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs and the report go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  start_jax(_CONFIG.value)
  command = 'python -m experiments.seeded_runs ' + ' '.join(a for a in sys.argv[1:])
  print(f'report: {run_seeded_variants(_CONFIG.value, _WORKDIR.value, command)}')


if __name__ == '__main__':
  user_errors.run(main)
