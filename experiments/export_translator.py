"""Export a trained translator (encoder + greedy decoding and beam search, parameters included) with jax.export, or
translate with an export.

    python -m experiments.export_translator --workdir=workdirs/default --out_dir=exported/dates --beam_size=4
    python -m experiments.export_translator --workdir=workdirs/default --out_dir=exported/dates --platforms=cpu,tpu
    python -m experiments.export_translator --translate_from=exported/dates --beam "tue 3 jan. 1995"

Writes <out_dir>/{greedy,beam}.jaxexport, vocab.json, manifest.json and exported_translator.py (the loader, which
needs only jax and numpy: see attention_jax/exported_translator.py) and prints the manifest's path. With
--translate_from, translates the sentences (arguments or stdin) from the export, one line each: sentence and
translation, tab-separated.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from attention_jax.exported_translator import PLATFORMS, ExportedTranslator
from attention_jax.tasks.translation_export import export_translator
from experiments import user_errors

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir to export.')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Where the export goes.')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest', 'averaged'],
                                'Which checkpoint to export (averaged: written by experiments.average_checkpoints).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'Beam size of the exported beam search (default: the config\'s '
                                  'eval.beam_size; 1 = greedy decoding only).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Fix the batch size (default: any batch size).')
_PLATFORMS = flags.DEFINE_list('platforms', ['cpu'], f'Platforms to lower for, among {",".join(PLATFORMS)}.')
_TRANSLATE_FROM = flags.DEFINE_string('translate_from', None, 'Translate the sentences with this export instead.')
_BEAM = flags.DEFINE_boolean('beam', False, 'With --translate_from: beam search instead of greedy decoding.')


def main(argv):
  logging.set_verbosity(logging.ERROR)   # orbax warns that a read-only checkpoint directory is read-only
  if _TRANSLATE_FROM.value:
    if _WORKDIR.value or _OUT_DIR.value:
      raise app.UsageError('--translate_from translates with an export; it takes no --workdir or --out_dir.')
    sentences = argv[1:] or [line.strip() for line in sys.stdin if line.strip()]
    if not sentences:
      raise app.UsageError('Give sentences as arguments or on stdin.')
    translator = ExportedTranslator.load(_TRANSLATE_FROM.value)
    for sentence, output in zip(sentences, translator.translate(sentences, beam=_BEAM.value)):
      print(f'{sentence}\t{output}')
    return
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])} (sentences go with --translate_from).')
  if not _WORKDIR.value or not _OUT_DIR.value:
    raise app.UsageError('Give --workdir and --out_dir (or --translate_from=<export directory> to translate).')
  path = export_translator(_WORKDIR.value, _OUT_DIR.value, which=_CHECKPOINT.value, beam_size=_BEAM_SIZE.value,
                           batch_size=_BATCH_SIZE.value, platforms=_PLATFORMS.value)
  print(f'exported {_WORKDIR.value} ({_CHECKPOINT.value} checkpoint) to {path}')


if __name__ == '__main__':
  user_errors.run(main)
