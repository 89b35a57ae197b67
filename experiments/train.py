"""Train and evaluate a config: the task (translation, sentiment or digit_strips) is config.experiment.

    python -m experiments.train --config=configs/default.py --workdir=workdirs/default [--config.model.scorer=general]
    python -m experiments.train --config=configs/sentiment.py --workdir=workdirs/sentiment
    python -m experiments.train --config=configs/digit_strips.py --workdir=workdirs/digits

Rerunning the same command resumes from the workdir's newest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from attention_jax import tasks

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and heatmaps.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  try:
    tasks.get(_CONFIG.value.get('experiment', 'translation'))
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  tasks.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
