"""Translate sentences with a trained workdir and save one attention heatmap (PNG) per sentence, or a whole file.

    python -m experiments.translate --workdir=workdirs/default "tue 3 jan. 1995" "the 2nd of may 2001"
    echo "march 5, 1999" | python -m experiments.translate --workdir=workdirs/default --beam_size=4
    python -m experiments.translate --workdir=workdirs/default --input=dates.txt --output=dates.out

With --input, every line is translated (batched by length, order kept, an empty line stays empty) and the
translations go one per line to --output (default: stdout), without heatmaps.

Uses the workdir's config.json and vocab.json, and its best checkpoint (or the latest with --checkpoint=latest).
Prints one line per sentence: sentence, translation and heatmap path, tab-separated.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from attention_jax.tasks.translation_inference import translate, translate_lines
from experiments import user_errors

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where heatmaps go (default: <workdir>/translations).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'Beam size (default: the config\'s eval.beam_size; 1 = greedy).')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint to load.')
_INPUT = flags.DEFINE_string('input', None, 'Translate every line of this file (no heatmaps).')
_OUTPUT = flags.DEFINE_string('output', None, 'With --input: write the translations here (default: stdout).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'With --input: sources decoded together.')
flags.mark_flag_as_required('workdir')


def main(argv):
  logging.set_verbosity(logging.ERROR)   # orbax warns that a read-only checkpoint directory is read-only
  if _INPUT.value:
    if len(argv) > 1:
      raise app.UsageError('Give sentences as arguments or --input, not both.')
    with open(_INPUT.value, encoding='utf-8') as f:
      lines = f.read().splitlines()
    outputs = translate_lines(lines, _WORKDIR.value, _BEAM_SIZE.value, _CHECKPOINT.value, _BATCH_SIZE.value)
    text = ''.join(f'{output}\n' for output in outputs)
    if _OUTPUT.value:
      with open(_OUTPUT.value, 'w', encoding='utf-8') as f:
        f.write(text)
    else:
      sys.stdout.write(text)
    return
  sentences = argv[1:] or [line.strip() for line in sys.stdin if line.strip()]
  if not sentences:
    raise app.UsageError('Give sentences as arguments or on stdin.')
  output_dir = _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, 'translations')
  for sentence, output, path in translate(sentences, _WORKDIR.value, output_dir, _BEAM_SIZE.value, _CHECKPOINT.value):
    print(f'{sentence}\t{output}\t{path}')


if __name__ == '__main__':
  user_errors.run(main)
