"""Train and evaluate a config: the task (translation, sentiment or digit_strips) is config.experiment.

    python -m experiments.train --config=configs/default.py --workdir=workdirs/default [--config.model.scorer=general]
    python -m experiments.train --config=configs/sentiment.py --workdir=workdirs/sentiment
    python -m experiments.train --config=configs/messages_en_fr_cpu.py --workdir=workdirs/messages_en_fr_cpu \
        --results_dir=results/messages_en_fr_cpu

Rerunning the same command resumes from the workdir's newest checkpoint (a finished run only re-tests).
--results_dir copies the run's small outputs (config, metrics, report, test results, heatmaps; never
checkpoints) to a directory meant to be committed, with the command that regenerates them.
"""

import os
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from attention_jax import platform_info
from attention_jax import tasks
from experiments import start_jax
from experiments import user_errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and heatmaps.')
_RESULTS_DIR = flags.DEFINE_string('results_dir', None, 'Where to copy the small outputs (optional).')
flags.mark_flags_as_required(['config', 'workdir'])

SMALL_OUTPUTS = ('.json', '.jsonl', '.md', '.png', '.html', '.csv')
LARGE_OUTPUTS = ('checkpoints', 'best', 'tensorboard')
REBUILT_OUTPUTS = ('vocab.json',)     # the tokenizers, rebuilt from the data (a SentencePiece vocabulary is ~1 MB)


def copy_small_outputs(workdir: str, results_dir: str, command: str, wall_seconds: float) -> None:
  """Copies workdir's small files (SMALL_OUTPUTS; not checkpoints, event files or vocab.json) to results_dir and writes
  results_dir/command.md: the command, this invocation's wall time and the platform."""
  shutil.rmtree(results_dir, ignore_errors=True)
  for root, dirs, files in os.walk(workdir):
    dirs[:] = [d for d in dirs if d not in LARGE_OUTPUTS]
    for name in files:
      if name.endswith(SMALL_OUTPUTS) and name not in REBUILT_OUTPUTS:
        target = os.path.join(results_dir, os.path.relpath(os.path.join(root, name), workdir))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, name), target)
  with open(os.path.join(results_dir, 'command.md'), 'w') as f:
    f.write(f'Regenerate (from a fresh workdir):\n\n    {command}\n\nThis invocation: {wall_seconds / 60:.1f} min '
            f'on {platform_info.describe()}.\n')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  try:
    tasks.get(_CONFIG.value.get('experiment', 'translation'))
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  start_jax(_CONFIG.value)
  started = time.perf_counter()
  tasks.run(_CONFIG.value, _WORKDIR.value)
  if _RESULTS_DIR.value:
    command = 'python -m experiments.train ' + ' '.join(sys.argv[1:])
    copy_small_outputs(_WORKDIR.value, _RESULTS_DIR.value, command, time.perf_counter() - started)
    print(f'results: {_RESULTS_DIR.value}')


if __name__ == '__main__':
  user_errors.run(main)
