"""One process of a 2-process run on 127.0.0.1 (see tests/tasks/test_translation.py). Trains the tiny config in
'sharded' or 'pmap' mode with each process feeding its own half of every batch, then prints a checksum of the
params and the test loss."""

import sys

import jax
import numpy as np

from attention_jax import tasks
from configs import test_tiny


def main(port: str, process_id: str, workdir: str, data_dir: str, mode: str):
  config = test_tiny.get_config()
  config.data.data_dir = data_dir
  config.train.parallel = mode
  config.train.num_steps = 8
  config.train.log_every = 4
  config.train.eval_every = 8
  config.train.checkpoint_every = 4
  config.eval.num_heatmaps = 0
  config.eval.max_examples = 32              # two global eval batches: the lock-step check needs no more
  config.eval.validation_bleu = False
  config.distributed.coordinator_address = f'127.0.0.1:{port}'
  config.distributed.num_processes = 2
  config.distributed.process_id = int(process_id)
  results = tasks.run(config, workdir)         # starts jax.distributed from config.distributed
  from attention_jax.training import checkpointing
  from attention_jax.tasks import translation
  task, model = translation.build(config)
  state = translation.initial_state(config, task, model)
  restored = checkpointing.Checkpoints(workdir, best_metric=None).restore_latest(checkpointing.abstract_like(state))
  params = jax.device_get(restored[0].params)
  checksum = sum(float(np.sum(np.abs(x))) for x in jax.tree.leaves(params))
  print(f'PROCESS {jax.process_index()} OF {jax.process_count()} STEP {int(restored[0].step)} '
        f'CHECKSUM {checksum:.6f} LOSS {results["loss"]:.6f}', flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
