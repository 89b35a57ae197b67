"""The prepare_data command: valid names, and a synthetic task built through it."""

import subprocess
import sys

ROOT = __file__.rsplit('/tests/', 1)[0]


def run(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.prepare_data', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)


def test_unknown_dataset_lists_the_valid_ones():
  result = run('--dataset=wmt')
  assert result.returncode != 0
  assert 'Valid datasets: vader_sentiment, digit_strips, fashion_strips, fashion_canvases, fashion_cluttered, conll2003, espeak_speech, copy, reverse, sort, date, messages_en_fr' in result.stderr
  assert 'bible_en_es, debian_summaries, tfds:<tfds catalog name>' in result.stderr


def test_prepares_a_synthetic_task(tmp_path):
  result = run('--dataset=sort', f'--data_dir={tmp_path}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert "{'train': 20000, 'validation': 1000, 'test': 1000, 'test_long': 1000}" in result.stdout
