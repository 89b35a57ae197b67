"""Summarisation: the Debian-description corpus on a Translation-en file written here, ROUGE against hand-derived
values and a brute-force LCS, and a tiny end-to-end run that reports ROUGE."""

import hashlib
import itertools
import lzma

import numpy as np
import pytest

from attention_jax import data
from attention_jax import special_tokens
from attention_jax.data import summaries
from attention_jax.data import translation
from attention_jax.data import translation_task
from attention_jax.metrics import rouge
from attention_jax.tasks.translation import train_and_evaluate
from attention_jax.training.metrics_writer import read_metrics

STANZAS = """Package: libfoo1
Description-md5: 00000000000000000000000000000001
Description-en: fast foo parsing library
 Foo is a library that parses foo files quickly and
   safely.
 .
 This package contains the shared library.

Package: libfoo-dev
Description-md5: 00000000000000000000000000000002
Description-en: fast foo parsing library - development files
 Foo is a library that parses foo files quickly and safely.
 .
 This package contains the development headers:
  * headers
  * static library

Package: foo-copy
Description-md5: 00000000000000000000000000000003
Description-en: another name for the foo library
 Foo is a library that parses foo files quickly and
   safely.
 .
 This package contains the shared library.

Package: tiny
Description-md5: 00000000000000000000000000000004
Description-en: package with a short description
 Too short here.

Package: oneword
Description-md5: 00000000000000000000000000000005
Description-en: transitional
 This is a transitional package that can be removed safely.
"""


def family_stanzas(count: int) -> str:
  """`count` families of two packages (library + -dev) sharing their first paragraph."""
  out = []
  for i in range(count):
    first = f'Tool number {i} converts images of kind {i} into documents of kind {i + 1}.'
    out.append(f'Package: lib{i}\nDescription-en: image converter {i} library\n {first}\n .\n Runtime files.\n')
    out.append(f'Package: lib{i}-dev\nDescription-en: image converter {i} headers\n {first}\n .\n Development '
               f'files for number {i}.\n')
  return '\n'.join(out)


def test_parse_joins_paragraphs_and_lists():
  parsed = list(summaries.parse_translation_file(STANZAS))
  assert [p[0] for p in parsed] == ['libfoo1', 'libfoo-dev', 'foo-copy', 'tiny', 'oneword']
  assert parsed[1][1] == 'fast foo parsing library - development files'
  assert parsed[1][2] == ('Foo is a library that parses foo files quickly and safely.\n'
                          'This package contains the development headers: * headers * static library')


def test_clean_pairs_filter_and_deduplicate():
  examples = summaries.clean_pairs(summaries.parse_translation_file(STANZAS))
  # 'tiny' (3-word description) and 'oneword' (1-word synopsis) are dropped; 'foo-copy' repeats libfoo1's text.
  assert [e['package'] for e in examples] == ['libfoo1', 'libfoo-dev']
  assert examples[0] == {
      'package': 'libfoo1', 'summary': 'fast foo parsing library',
      'document': 'Foo is a library that parses foo files quickly and safely. This package contains the shared '
                  'library.',
      'family': 'Foo is a library that parses foo files quickly and safely.'}
  assert examples[0]['family'] == examples[1]['family']


def test_builder_keeps_families_together_and_records_the_checksum(tmp_path):
  text = family_stanzas(80)
  source = tmp_path / 'Translation-en.xz'
  with lzma.open(source, 'wb') as f:
    f.write(text.encode('utf-8'))
  built = summaries.builder(str(tmp_path / 'data'), str(source))
  built.download_and_prepare()
  metadata = summaries.builder(str(tmp_path / 'data')).info.metadata       # read back from disk
  assert metadata['source_sha256'] == hashlib.sha256(text.encode('utf-8')).hexdigest()
  assert metadata['num_stanzas'] == 160 and metadata['source'] == 'Translation-en.xz'
  data = built.as_data_source()
  split_of_package = {}
  for split in ('train', 'validation', 'test'):
    for i in range(len(data[split])):
      record = data[split][i]
      split_of_package[record['package'].decode()] = split
      assert record['summary'].decode().startswith('image converter')
  assert len(split_of_package) == 160
  for i in range(80):
    assert split_of_package[f'lib{i}'] == split_of_package[f'lib{i}-dev']       # a family never straddles splits
  assert set(split_of_package.values()) == {'train', 'validation', 'test'}
  with pytest.raises(ValueError, match='--dataset=debian_summaries'):
    summaries.builder(str(tmp_path / 'other')).download_and_prepare()


def test_task_cuts_long_documents_instead_of_dropping_them(tmp_path):
  long_text = family_stanzas(60) + '\n' + (
      'Package: verbose\nDescription-en: very long description here\n ' + ' '.join(['word'] * 300) + '\n')
  source = tmp_path / 'Translation-en'
  source.write_text(long_text)
  summaries.builder(str(tmp_path / 'data'), str(source)).download_and_prepare()
  config = data.default_data_config('debian_summaries')
  config.data_dir = str(tmp_path / 'data')
  config.tokenizer = 'char'
  config.max_source_length = 40
  config.max_target_length = 40
  task = translation.make_task(config)
  kept = [task.examples(split) for split in task.splits]
  documents = {document: summary for split in kept for document, summary in split}
  assert len(documents) == 121                       # every document is far longer than S = 40 characters
  split = next(s for s in task.splits if any(summary == 'very long description here' for _, summary in
                                             task.examples(s)))
  index = [summary for _, summary in task.examples(split)].index('very long description here')
  batch = task.eval_batches(split, batch_size=len(task.examples(split)))[0]
  source = batch['source'][index]
  assert source[-1] == special_tokens.EOS_ID and np.all(source[:-1] != special_tokens.PAD_ID)   # cut to S - 1 + EOS
  assert task.source_tokenizer.decode(source) == ('word ' * 8)[:39]
  assert task.target_tokenizer.decode(batch['target_out'][index]) == 'very long description here'
  with pytest.raises(ValueError, match='truncate_sources cuts sources'):
    translation_task.TranslationTask('x', {}, task.source_tokenizer, task.target_tokenizer, 8, 8, has_alignments=True,
                                truncate_sources=True)


def test_unprepared_summaries_name_the_command(tmp_path):
  config = data.default_data_config('debian_summaries')
  config.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='python -m experiments.prepare_data --dataset=debian_summaries'):
    translation.make_task(config)


def test_rouge_hand_derived_values():
  ref, hyp = 'The cat sat on the mat.', 'the cat, on the mat'
  # Unigrams: all 5 of the hypothesis are in the reference (the x2 clipped to 2): P = 5/5, R = 5/6.
  np.testing.assert_allclose(rouge.rouge_n(rouge.tokenize(hyp), rouge.tokenize(ref), 1), (1.0, 5 / 6, 10 / 11))
  # Bigrams: 'the cat', 'on the', 'the mat' of 4 in the hypothesis and 5 in the reference.
  np.testing.assert_allclose(rouge.rouge_n(rouge.tokenize(hyp), rouge.tokenize(ref), 2), (0.75, 0.6, 2 / 3))
  np.testing.assert_allclose(rouge.rouge_l(rouge.tokenize(hyp), rouge.tokenize(ref)), (1.0, 5 / 6, 10 / 11))
  # Clipping: 'the the the' against 'the cat': one 'the' matches. LCS differs from bag overlap on order.
  np.testing.assert_allclose(rouge.rouge_n(['the'] * 3, ['the', 'cat'], 1), (1 / 3, 1 / 2, 0.4))
  assert rouge.rouge_l(['b', 'a'], ['a', 'b']) == (0.5, 0.5, 0.5)
  assert rouge.rouge_n(['a', 'b'], ['a', 'b'], 1) == (1.0, 1.0, 1.0)
  scores = rouge.rouge_scores([hyp, 'nothing in common'], [ref, 'the mat'])
  np.testing.assert_allclose([scores['rouge1'], scores['rouge2'], scores['rougeL']],
                             [100 * 10 / 11 / 2, 100 * (2 / 3) / 2, 100 * 10 / 11 / 2])
  assert rouge.tokenize("Python-3 bindings (GTK+)") == ['python', '3', 'bindings', 'gtk']
  assert rouge.rouge_scores([''], ['a b'])['rouge1'] == 0.0
  with pytest.raises(ValueError, match='got 1 hypotheses and 2 references'):
    rouge.rouge_scores(['a'], ['a', 'b'])
  with pytest.raises(ValueError, match='n >= 1'):
    rouge.rouge_n(['a'], ['a'], 0)


def brute_force_lcs(a, b) -> int:
  for size in range(min(len(a), len(b)), 0, -1):
    subsequences = set(itertools.combinations(b, size))
    if any(s in subsequences for s in itertools.combinations(a, size)):
      return size
  return 0


def test_lcs_matches_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(40):
    a = list(rng.choice(list('abcd'), rng.integers(0, 8)))
    b = list(rng.choice(list('abcd'), rng.integers(0, 8)))
    assert rouge.lcs_length(a, b) == brute_force_lcs(a, b) == rouge.lcs_length(b, a), (a, b)


@pytest.mark.slow
def test_summarisation_run_reports_rouge(tmp_path):
  from configs import debian_summaries as summary_config
  source = tmp_path / 'Translation-en'
  source.write_text(family_stanzas(120))
  summaries.builder(str(tmp_path / 'data'), str(source)).download_and_prepare()
  config = summary_config.get_config()
  config.data.data_dir = str(tmp_path / 'data')
  config.data.vocab_size = 64
  config.data.max_source_length = 24
  config.model.embed_dim = config.model.hidden_dim = 8
  config.train.batch_size = 16
  config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 4
  config.train.log_every = 2
  config.eval.batch_size = 16
  config.eval.max_examples = 16
  config.eval.num_heatmaps = 1
  config.eval.beam_size = 1
  results = train_and_evaluate(config, str(tmp_path / 'run'))
  for key in ('rouge1', 'rouge2', 'rougeL', 'bleu'):
    assert 0.0 <= results[f'greedy/{key}'] <= 100.0, key
  assert results['greedy/rougeL'] <= results['greedy/rouge1'] + 1e-9        # an LCS never exceeds the unigram overlap
  validation = [r for r in read_metrics(str(tmp_path / 'run')) if r['split'] == 'validation']
  assert validation and 'rougeL' in validation[-1]
