"""Train every variant of a comparison config (seeds vmapped) and write a report into the workdir.

    python -m experiments.compare --config=configs/compare_quick.py --workdir=results/compare_quick

Rerunning skips finished variants and resumes the unfinished one.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from attention_jax.studies.compare import run_comparison
from experiments import start_jax
from experiments import user_errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Comparison config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where runs and the report go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  start_jax(_CONFIG.value)
  command = 'python -m experiments.compare ' + ' '.join(a for a in sys.argv[1:])
  print(f'report: {run_comparison(_CONFIG.value, _WORKDIR.value, command)}')


if __name__ == '__main__':
  user_errors.run(main)
