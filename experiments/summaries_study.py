"""Trained summarisers side by side with the lead baselines on the same test documents: report.md + study.json.

    python -m experiments.summaries_study --results_dir=results/debian_summaries_study \
        --run="attention baseline=workdirs/debian_summaries" \
        --run="pointer-generator=workdirs/debian_summaries_pointer" \
        --run="pointer-generator + coverage=workdirs/debian_summaries_pointer_coverage"

Each --run is LABEL=WORKDIR of a finished run (experiments.train with configs/debian_summaries.py:<variant>).
"""

import sys

from absl import app
from absl import flags
from absl import logging

from attention_jax.studies.summaries_study import write_study
from experiments import start_jax
from experiments import user_errors

_RUNS = flags.DEFINE_multi_string('run', None, 'LABEL=WORKDIR of a finished summarisation run (repeat the flag).')
_RESULTS_DIR = flags.DEFINE_string('results_dir', None, 'Where report.md and study.json go.')
_EXAMPLES = flags.DEFINE_integer('num_examples', 6, 'Test documents decoded by every run for the example table.')
flags.mark_flags_as_required(['run', 'results_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  start_jax()
  runs = []
  for spec in _RUNS.value:
    label, sep, workdir = spec.partition('=')
    if not sep or not label.strip() or not workdir.strip():
      raise ValueError(f'--run={spec!r}: write LABEL=WORKDIR, e.g. --run="pointer-generator=workdirs/pointer".')
    runs.append((label.strip(), workdir.strip()))
  command = 'python -m experiments.summaries_study ' + ' '.join(f'"{a}"' if ' ' in a else a for a in sys.argv[1:])
  print(f'report: {write_study(runs, _RESULTS_DIR.value, num_examples=_EXAMPLES.value, command=command)}')


if __name__ == '__main__':
  user_errors.run(main)
