"""A translation workdir without training: configs/test_tiny's config.json, a character vocab.json and checkpoints
of random parameters, laid out as experiments.train writes them, in about a second.

    states = write_translation_workdir(workdir, checkpoint_steps=(5, 10, 15))   # {step: saved TrainState}
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax.data.tokenizers import CharTokenizer, save_tokenizers
from attention_jax.models import build_model
from attention_jax.training import checkpointing
from attention_jax.training import steps
from configs import test_tiny

CHARACTERS = 'abcde'             # the copy task of test_tiny: alphabet_size 5
MAX_LENGTH = 11                  # its padded source and target lengths S, T


def abstract_train_state(config):
  """ShapeDtypeStructs of the TrainState that translation_inference.load_translator builds for `config`."""
  vocab_size = CharTokenizer(CHARACTERS).vocab_size
  model = build_model(config.model, source_vocab_size=vocab_size, target_vocab_size=vocab_size,
                      max_source_length=MAX_LENGTH)
  inputs = jnp.zeros((1, MAX_LENGTH), jnp.int32)
  return jax.eval_shape(lambda: steps.create_train_state(model, steps.make_optimizer(config.train), config.seed,
                                                         inputs, inputs))


def random_state(abstract, seed: int, step: int):
  """A TrainState shaped like `abstract`: normal floats drawn from `seed`, zero integers, the given step."""
  rng = np.random.default_rng(seed)

  def leaf(spec):
    if jnp.issubdtype(spec.dtype, jnp.floating):
      return jnp.asarray(rng.normal(size=spec.shape), spec.dtype)
    return jnp.zeros(spec.shape, spec.dtype)
  return jax.tree.map(leaf, abstract).replace(step=jnp.asarray(step, jnp.int32))


def write_translation_workdir(workdir: str, checkpoint_steps=(5, 10, 15), config=None) -> dict:
  """Writes config.json (default: test_tiny's), vocab.json and workdir/checkpoints/<step> for each step (data state
  {'next_index': step}); returns {step: the TrainState saved there}."""
  config = config or test_tiny.get_config()
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  tokenizer = CharTokenizer(CHARACTERS)
  save_tokenizers(workdir, tokenizer, tokenizer, MAX_LENGTH, MAX_LENGTH)
  abstract = abstract_train_state(config)
  states = {step: random_state(abstract, seed=step, step=step) for step in checkpoint_steps}
  checkpoints = checkpointing.Checkpoints(workdir, keep=len(states), best_metric=None)
  for step, state in states.items():
    checkpoints.save(step, state, {'next_index': step})
  checkpoints.wait()
  checkpoints.close()
  return states
