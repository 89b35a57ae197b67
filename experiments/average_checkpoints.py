"""Average the parameters of a training run's last N checkpoints into one checkpoint, to translate with.

    python -m experiments.average_checkpoints --workdir=workdirs/default --last=5
    python -m experiments.translate --workdir=workdirs/default --checkpoint=averaged "tue 3 jan. 1995"

Writes <output_dir>/<newest step>/{state, data} (replacing an earlier average there): the newest checkpoint of
<workdir>/checkpoints with each parameter the mean of its last N saved values. A run keeps
config.train.keep_checkpoints checkpoints. Prints the steps averaged and the checkpoint's path.
"""

import os

from absl import app
from absl import flags
from absl import logging

from attention_jax.training import checkpointing
from experiments import user_errors

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.')
_LAST = flags.DEFINE_integer('last', 5, 'Average the parameters of this many of the newest checkpoints.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where the averaged checkpoint goes (default: '
                                  f'<workdir>/{checkpointing.AVERAGED}, which --checkpoint=averaged reads).')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.ERROR)   # orbax warns that a read-only checkpoint directory is read-only
  averaged = checkpointing.average_checkpoints(_WORKDIR.value, _LAST.value)
  output_dir = _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, checkpointing.AVERAGED)
  path = checkpointing.write_checkpoint(output_dir, averaged.steps[-1], averaged.state, averaged.data_state)
  print(f'averaged the parameters of steps {", ".join(map(str, averaged.steps))} into {path}')


if __name__ == '__main__':
  user_errors.run(main)
