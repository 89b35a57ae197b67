"""`python -m tests.helpers.dump_checkpoint WORKDIR OUT.npz`: every leaf of the newest checkpoint of WORKDIR (train
state, read without a target tree) into OUT.npz by its tree path, plus its step and data-iterator state as JSON.
Run it with the device count the checkpoint was saved with (orbax restores onto the saving topology)."""

import json
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp


def main(workdir: str, out: str):
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                                  options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  step = manager.latest_step()
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                          data=ocp.args.JsonRestore()))
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(restored['state'])[0]}
  np.savez(out, **leaves, __meta__=np.asarray(json.dumps({'step': step, 'data': restored['data']})))


if __name__ == '__main__':
  main(*sys.argv[1:])
