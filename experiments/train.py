"""Train and evaluate a translation config.

    python -m experiments.train --config=configs/default.py --workdir=workdirs/default [--config.model.scorer=general]

Rerunning the same command resumes from the workdir's newest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from attention_jax.training.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and heatmaps.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
