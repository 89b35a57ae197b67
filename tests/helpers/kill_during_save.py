"""`python -m experiments.train ...` that SIGKILLs itself right after starting the asynchronous checkpoint save
of step $KILL_AT_STEP: a deterministic `kill -9` in the middle of training and of a save. A rerun of the same
command must resume from the newest complete checkpoint (see tests/tasks/test_translation.py)."""

import os
import signal

from absl import app

from attention_jax.training import checkpointing
from experiments import train

_save = checkpointing.Checkpoints.save


def _save_then_die(self, step, state, data_state):
  _save(self, step, state, data_state)
  if step == int(os.environ['KILL_AT_STEP']):
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == '__main__':
  checkpointing.Checkpoints.save = _save_then_die
  app.run(train.main)
