"""Translate sentences with a trained workdir and save one attention heatmap (PNG) per sentence.

    python -m experiments.translate --workdir=workdirs/default "tue 3 jan. 1995" "the 2nd of may 2001"
    echo "march 5, 1999" | python -m experiments.translate --workdir=workdirs/default --beam_size=4

Uses the workdir's config.json and vocab.json, and its best checkpoint (or the latest with --checkpoint=latest).
"""

import json
import os
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging

from attention_jax import decoding
from attention_jax import visualization
from attention_jax.data import translation as translation_data
from attention_jax.models import build_model
from attention_jax.training import checkpointing
from attention_jax.training import steps

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where heatmaps go (default: <workdir>/translations).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'Beam size (default: the config\'s eval.beam_size; 1 = greedy).')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint to load.')
flags.mark_flag_as_required('workdir')


def load_translator(workdir: str, which: str = 'best'):
  """(config, source vocab, target vocab, S, T, model, params) from a training workdir."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  source_vocab, target_vocab, max_source, max_target = translation_data.load_vocabularies(workdir)
  model = build_model(config.model, source_vocab_size=source_vocab.vocab_size,
                      target_vocab_size=target_vocab.vocab_size, max_source_length=max_source)
  abstract = steps.create_train_state(model, steps.make_optimizer(config.train), config.seed,
                                      jnp.zeros((1, max_source), jnp.int32), jnp.zeros((1, max_target), jnp.int32))
  state = checkpointing.restore_for_inference(workdir, checkpointing.abstract_like(abstract),
                                              'best' if which == 'best' else 'checkpoints')
  return config, source_vocab, target_vocab, max_source, max_target, model, state.params


def translate(sentences, workdir: str, output_dir: str, beam_size: int | None = None, which: str = 'best'):
  """Returns [(sentence, translation, heatmap path)]."""
  config, source_vocab, target_vocab, max_source, max_target, model, params = load_translator(workdir, which)
  if beam_size is not None:
    config.eval.beam_size = beam_size
  source = np.zeros((len(sentences), max_source), np.int32)
  for i, sentence in enumerate(sentences):
    ids = source_vocab.encode(sentence)[: max_source - 1] + [translation_data.EOS_ID]
    source[i, : len(ids)] = ids
  if config.eval.beam_size > 1:
    tokens, weights = decoding.beam_search(model, params, jnp.asarray(source), max_length=max_target,
                                           beam_size=int(config.eval.beam_size),
                                           length_penalty=float(config.eval.length_penalty))
  else:
    tokens, weights = decoding.greedy_decode(model, params, jnp.asarray(source), max_length=max_target)
  results = []
  for i, sentence in enumerate(sentences):
    output = target_vocab.decode(tokens[i])
    path = visualization.plot_attention(
        np.asarray(weights[i]), source_vocab.tokens(source[i]), target_vocab.tokens(tokens[i]),
        os.path.join(output_dir, f'translation_{i:02d}.png'), title=f'{sentence!r} -> {output!r}')
    results.append((sentence, output, path))
  return results


def main(argv):
  logging.set_verbosity(logging.ERROR)   # orbax warns that a read-only checkpoint directory is read-only
  sentences = argv[1:] or [line.strip() for line in sys.stdin if line.strip()]
  if not sentences:
    raise app.UsageError('Give sentences as arguments or on stdin.')
  output_dir = _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, 'translations')
  for sentence, output, path in translate(sentences, _WORKDIR.value, output_dir, _BEAM_SIZE.value, _CHECKPOINT.value):
    print(f'{sentence}\t{output}\t{path}')


if __name__ == '__main__':
  app.run(main)
