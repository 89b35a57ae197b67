"""The summarisation study: trained summarisers side by side with the lead baselines, on the same test documents.

    write_study([('attention baseline', 'workdirs/debian_summaries'), ('pointer-generator', ...)], 'results/x')

Reads each run's test_results.json (ROUGE-1/2/L F1, BLEU, the share of repeated trigrams and, for the
pointer-generator, the copy rate 1 - p_gen of greedy outputs), scores the first-k-words lead baselines on the
test documents the runs were scored on (config.eval.max_examples of the test split), and decodes the first
`num_examples` test documents with every run for an example table. Writes report.md and study.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import ml_collections

from attention_jax import platform_info
from attention_jax.data import make_task
from attention_jax.metrics.summarisation import lead_baselines
from attention_jax.tasks.translation_inference import translate_lines

DECODING = 'greedy'
LEAD_LENGTHS = (5, 8, 10, 12, 15, 20)
COLUMNS = (('rouge1', 'ROUGE-1'), ('rouge2', 'ROUGE-2'), ('rougeL', 'ROUGE-L'), ('bleu', 'BLEU'),
           ('repeated_trigrams', 'repeated trigrams %'), ('copy_rate', 'copy rate'))


def _cell(value, key: str) -> str:
  if value is None:
    return '-'
  return f'{value:.3f}' if key == 'copy_rate' else f'{value:.1f}'


def _text(text: str, limit: int = 160) -> str:
  text = ' '.join(text.split()).replace('|', '\\|')
  return text if len(text) <= limit else text[:limit - 3] + '...'


def load_run(workdir: str) -> dict:
  """The run's test results (its test_results.json) and config; FileNotFoundError names an unfinished run."""
  path = os.path.join(workdir, 'test_results.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{workdir} has no test_results.json: the run has not finished (rerun its training '
                            'command; it resumes).')
  with open(path) as f:
    results = json.load(f)
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  return {'results': results, 'config': config}


def write_study(runs: Sequence[tuple[str, str]], results_dir: str, *, num_examples: int = 6,
                lead_lengths: Sequence[int] = LEAD_LENGTHS, command: str = '') -> str:
  """report.md and study.json in results_dir for runs [(label, workdir)]; returns the report's path.

  Raises:
    ValueError: no runs, or runs scored on different datasets or numbers of test documents.
    FileNotFoundError: a run without test results.
  """
  if not runs:
    raise ValueError('Give at least one (label, workdir) run.')
  loaded = [(label, workdir, load_run(workdir)) for label, workdir in runs]
  data = {(r['config']['data']['name'], r['config']['eval']['max_examples']) for _, _, r in loaded}
  if len(data) != 1:
    raise ValueError(f'The runs were scored on different data (dataset, test documents): {sorted(data)}.')
  config = ml_collections.ConfigDict(loaded[0][2]['config'])     # the runs' shared data and test documents
  pairs = make_task(config.data).examples('test', int(config.eval.max_examples) or None)
  documents, references = [d for d, _ in pairs], [s for _, s in pairs]
  leads = lead_baselines(documents, references, lengths=tuple(lead_lengths))
  best_lead = max(leads, key=lambda name: leads[name]['rougeL'])

  rows = []
  for label, workdir, run in loaded:
    results = run['results']
    rows.append({'label': label, 'workdir': workdir, 'step': results.get('step'),
                 **{key: results.get(f'{DECODING}/{key}') for key, _ in COLUMNS}})
  shown = pairs[:num_examples]
  outputs = {label: translate_lines([d for d, _ in shown], workdir) for label, workdir, _ in loaded}

  lines = [f'# Summarisation: {len(loaded)} models and the lead baselines', '']
  if command:
    lines += [f'Regenerate: `{command}`', '']
  lines += [f'Test split, the first {len(pairs)} documents, {DECODING} decoding; ROUGE F1 x 100 '
            '(attention_jax.metrics.rouge, rouge-score conventions); repeated trigrams: share of the outputs\' '
            'trigrams that repeat an earlier one in the same output; copy rate: mean 1 - p_gen over output tokens. '
            f'Scored on {platform_info.describe()}.', '',
            '| model | steps | ' + ' | '.join(name for _, name in COLUMNS) + ' |', '|---' * (len(COLUMNS) + 2) + '|']
  for row in rows:
    lines.append(f'| {row["label"]} | {row["step"]} | ' + ' | '.join(_cell(row[key], key) for key, _ in COLUMNS)
                 + ' |')
  for name, scores in leads.items():
    lines.append(f'| lead baseline: first {name[4:]} words{" (best ROUGE-L)" if name == best_lead else ""} | - | '
                 + ' | '.join(_cell(scores.get(key), key) for key, _ in COLUMNS) + ' |')
  best_model = max(rows, key=lambda row: row['rougeL'])
  lines += ['', f'Best model by ROUGE-L: {best_model["label"]}, {best_model["rougeL"] - leads[best_lead]["rougeL"]:+.1f} '
            f'ROUGE-L over the best lead baseline (first {best_lead[4:]} words).', '',
            f'## Examples (the first {len(shown)} test documents)', '',
            '| document | reference | ' + ' | '.join(label for label, _, _ in loaded) + ' |',
            '|---' * (len(loaded) + 2) + '|']
  for i, (document, reference) in enumerate(shown):
    lines.append(f'| {_text(document)} | {_text(reference)} | '
                 + ' | '.join(_text(outputs[label][i]) for label, _, _ in loaded) + ' |')
  os.makedirs(results_dir, exist_ok=True)
  report = os.path.join(results_dir, 'report.md')
  with open(report, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(results_dir, 'study.json'), 'w') as f:
    json.dump({'runs': rows, 'lead_baselines': leads, 'best_lead': best_lead, 'test_documents': len(pairs),
               'examples': [{'document': d, 'reference': r, **{label: outputs[label][i] for label in outputs}}
                            for i, (d, r) in enumerate(shown)]}, f, indent=1)
  return report
