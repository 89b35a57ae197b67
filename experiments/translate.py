"""Translate sentences with a trained workdir, with a heatmap (PNG) per sentence and the attention explorer
(one HTML page: hover an output token to see its weights over the source), or translate a whole file.

    python -m experiments.translate --workdir=workdirs/default "tue 3 jan. 1995" "the 2nd of may 2001"
    echo "march 5, 1999" | python -m experiments.translate --workdir=workdirs/default --beam_size=4 --n_best=4
    python -m experiments.translate --workdir=workdirs/default --input=dates.txt --output=dates.out

Sentences (arguments or stdin) print one line each: sentence, translation and heatmap path, tab-separated; with
--n_best=N, N lines each: sentence, rank, score and translation. The explorer page goes to
<output_dir>/explorer.html (its path is printed on stderr).

With --input, every line is translated (batched by length, order kept, an empty line stays empty) and the
translations go one per line to --output (default: stdout), without heatmaps; with --n_best=N, in the Moses n-best
format, N lines per input line `<line number from 0> ||| <translation> ||| <score>` (none for an empty line).

Scores are those beam search ranks by, log P / lp + cp (GNMT length and coverage penalties); greedy decoding's is
log P. Uses the workdir's config.json and vocab.json, and its best checkpoint (or --checkpoint=latest).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from attention_jax.tasks.translation_inference import EXPLORER_FILE, translate, translate_lines
from attention_jax.tasks.translation_inference import translate_lines_n_best
from experiments import start_jax
from experiments import user_errors

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where heatmaps go (default: <workdir>/translations).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'Beam size (default: the config\'s eval.beam_size; 1 = greedy).')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest', 'averaged'],
                                'Which checkpoint to load (averaged: written by experiments.average_checkpoints).')
_INPUT = flags.DEFINE_string('input', None, 'Translate every line of this file (no heatmaps).')
_OUTPUT = flags.DEFINE_string('output', None, 'With --input: write the translations here (default: stdout).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'With --input: sources decoded together.')
_N_BEST = flags.DEFINE_integer('n_best', 1, 'Outputs per source, best first, with their scores (<= the beam size).')
flags.mark_flag_as_required('workdir')


def main(argv):
  logging.set_verbosity(logging.ERROR)   # orbax warns that a read-only checkpoint directory is read-only
  start_jax()
  if _INPUT.value:
    if len(argv) > 1:
      raise app.UsageError('Give sentences as arguments or --input, not both.')
    with open(_INPUT.value, encoding='utf-8') as f:
      lines = f.read().splitlines()
    if _N_BEST.value > 1:
      n_best = translate_lines_n_best(lines, _WORKDIR.value, _BEAM_SIZE.value, _CHECKPOINT.value, _BATCH_SIZE.value,
                                      n=_N_BEST.value)
      text = ''.join(f'{i} ||| {output} ||| {score:.6g}\n' for i, outputs in enumerate(n_best)
                     for output, score in outputs)
    else:
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
  results = translate(sentences, _WORKDIR.value, output_dir, _BEAM_SIZE.value, _CHECKPOINT.value, _N_BEST.value)
  for result in results:
    if _N_BEST.value > 1:
      for rank, (output, score) in enumerate(zip(result.outputs, result.scores), start=1):
        print(f'{result.source}\t{rank}\t{score:.6g}\t{output}')
    else:
      print(f'{result.source}\t{result.output}\t{result.heatmap}')
  print(f'attention explorer: {os.path.join(output_dir, EXPLORER_FILE)}', file=sys.stderr)


if __name__ == '__main__':
  user_errors.run(main)
