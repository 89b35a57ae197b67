"""jax.export of a translator: the exported greedy decoding and beam search give the live model's translations and
attention, and load in a process without flax or attention_jax."""

import filecmp
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from attention_jax import decoding
from attention_jax import exported_translator
from attention_jax.exported_translator import ExportedTranslator
from attention_jax.tasks.translation_export import export_translator
from attention_jax.tasks.translation_inference import load_translator, translate_lines, translate_lines_n_best
from attention_jax.data.tokenizers import CharTokenizer, SentencePieceTokenizer
from attention_jax.special_tokens import BOS_ID, EOS_ID, FIRST_TOKEN_ID, PAD_ID, UNK_ID
from tests.helpers.tiny_workdir import write_translation_workdir

ROOT = __file__.rsplit('/tests/', 1)[0]
BEAM = 3
# An empty and a blank line, characters outside the vocabulary (UNK) and a line longer than S = 11.
LINES = ['dcba e', '', 'abc', 'a', 'xyz ab', '   ', 'abcdeabcdeabcde']
LIVE_BATCH = 8   # translate_lines' batch size here (small shapes compile faster)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(workdir, export directory, the loaded ExportedTranslator) of a test_tiny run with random parameters."""
  workdir = str(tmp_path_factory.mktemp('run'))
  out_dir = str(tmp_path_factory.mktemp('export'))
  write_translation_workdir(workdir, checkpoint_steps=(5,))
  export_translator(workdir, out_dir, beam_size=BEAM)
  return workdir, out_dir, ExportedTranslator.load(out_dir)


def test_the_export_directory_is_complete(exported):
  _, out_dir, translator = exported
  assert sorted(os.listdir(out_dir)) == ['beam.jaxexport', 'exported_translator.py', 'greedy.jaxexport',
                                         'manifest.json', 'vocab.json']
  assert filecmp.cmp(os.path.join(out_dir, 'exported_translator.py'), exported_translator.__file__, shallow=False)
  manifest = translator.manifest
  assert (manifest['source_length'], manifest['target_length'], manifest['beam_size']) == (11, 11, BEAM)
  assert manifest['batch_size'] is None and manifest['platforms'] == ['cpu']
  assert manifest['format_version'] == exported_translator.FORMAT_VERSION
  assert manifest['jax_version'] == jax.__version__
  assert str(translator.greedy.in_avals[0].shape) == '(b, 11)'   # any batch size


def test_translations_are_those_of_translate_lines(exported):
  workdir, _, translator = exported
  assert translator.translate(LINES) == translate_lines(LINES, workdir, beam_size=1, batch_size=LIVE_BATCH)
  live = translate_lines_n_best(LINES, workdir, beam_size=BEAM, n=BEAM, batch_size=LIVE_BATCH)
  # translate_lines(beam_size=BEAM) is the first of these (tests/tasks/test_translation_n_best.py); comparing with it
  # directly would compile beam search a second time (~6 s).
  assert translator.translate(LINES, beam=True) == [row[0][0] if row else '' for row in live]
  ours = translator.translate_n_best(LINES)
  assert [[text for text, _ in row] for row in ours] == [[text for text, _ in row] for row in live]
  np.testing.assert_allclose([score for row in ours for _, score in row],
                             [score for row in live for _, score in row], rtol=1e-5)
  assert translator.translate(LINES)[1] == '' and translator.translate_n_best(LINES, n=1)[1] == []


def test_attention_weights_are_the_live_models(exported):
  workdir, _, translator = exported
  config, _, _, max_source, max_target, model, params = load_translator(workdir)
  kept = [line for line in LINES if line.strip()]
  source = np.zeros((LIVE_BATCH, max_source), np.int32)   # translate_lines' shape: its compiled decoders are reused
  for i, line in enumerate(kept):
    ids = translator.source_ids(line)
    source[i, :len(ids)] = ids
  greedy = decoding.greedy_decode(model, params, source, max_length=max_target)
  beam = decoding.beam_search_n_best(model, params, source, max_length=max_target, beam_size=BEAM, n=BEAM,
                                     length_penalty=float(config.eval.length_penalty),
                                     coverage_penalty_weight=float(config.eval.coverage_penalty))
  for use_beam, (tokens, weights) in ((False, greedy), (True, (beam[0][:, 0], beam[1][:, 0]))):
    tokens, weights = np.asarray(tokens), np.asarray(weights)
    results = [result for line, result in zip(LINES, translator.translate_with_attention(LINES, beam=use_beam))
               if line.strip()]
    for i, (text, ours) in enumerate(results):
      ids = translator.source_ids(kept[i])
      length = translator._output_length(tokens[i])
      assert text == translator.target_vocab.decode(tokens[i])
      assert ours.shape == (length, len(ids))
      np.testing.assert_allclose(ours, weights[i, :length, :len(ids)], atol=1e-5)
      np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)   # trimming dropped only padding
  assert translator.translate_with_attention([''])[0][1].shape == (0, 0)


_FRESH_PROCESS = """
import importlib.util, json, sys
sys.modules['flax'] = None            # `import flax` (or attention_jax) now raises ImportError
sys.modules['attention_jax'] = None
spec = importlib.util.spec_from_file_location('exported_translator', sys.argv[1] + '/exported_translator.py')
module = sys.modules['exported_translator'] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
translator = module.ExportedTranslator.load(sys.argv[1])
lines = json.loads(sys.argv[2])
greedy = translator.translate_with_attention(lines)
print(json.dumps({'greedy': [text for text, _ in greedy], 'weights': [w.tolist() for _, w in greedy],
                  'loaded': sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'attention_jax', 'optax') and sys.modules[m] is not None)}))
"""


def test_the_export_translates_in_a_process_without_flax(exported):
  _, out_dir, translator = exported
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ''}
  result = subprocess.run([sys.executable, '-c', _FRESH_PROCESS, out_dir, json.dumps(LINES)], cwd='/', env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  output = json.loads(result.stdout.strip().splitlines()[-1])
  greedy = translator.translate_with_attention(LINES)
  assert output['greedy'] == [text for text, _ in greedy]
  for theirs, (_, ours) in zip(output['weights'], greedy):
    np.testing.assert_allclose(np.asarray(theirs, np.float32).reshape(ours.shape), ours, atol=1e-6)
  assert output['loaded'] == []   # (beam.jaxexport was deserialized there too: load reads both)


def test_the_loaders_vocabularies_tokenize_as_the_training_tokenizers(tmp_path):
  texts = ['the cat sat on the mat', 'le chat est sur le tapis', 'a dog and a cat', 'un chien et un chat'] * 10
  special = exported_translator._Special(pad=PAD_ID, bos=BOS_ID, eos=EOS_ID, unk=UNK_ID, first=FIRST_TOKEN_ID)
  for tokenizer in (CharTokenizer('abcde '), SentencePieceTokenizer.train(texts, 40, str(tmp_path / 'sp.model'))):
    vocab = exported_translator._vocab(tokenizer.to_json(), special)
    for text in ('the dog sat', 'abc de', 'xyz', ''):
      ids = tokenizer.encode(text)
      assert vocab.encode(text) == ids
      for output in (ids, [BOS_ID, *ids, PAD_ID], [*ids, UNK_ID, EOS_ID, *ids], [*ids, PAD_ID, PAD_ID]):
        assert vocab.decode(output) == tokenizer.decode(output), (type(tokenizer), text, output)


def _edited_copy(out_dir, tmp_path, **changes):
  copy = str(tmp_path / 'edited')
  shutil.copytree(out_dir, copy)
  with open(os.path.join(copy, 'manifest.json')) as f:
    manifest = json.load(f)
  manifest.update(changes)
  with open(os.path.join(copy, 'manifest.json'), 'w') as f:
    json.dump(manifest, f)
  return copy


def test_bad_input_says_what_is_wrong_and_what_to_do(exported, tmp_path):
  workdir, out_dir, translator = exported
  with pytest.raises(FileNotFoundError, match='No export directory .* experiments.export_translator'):
    ExportedTranslator.load(str(tmp_path / 'missing'))
  with pytest.raises(FileNotFoundError, match='No manifest.json .* not an exported translator'):
    ExportedTranslator.load(workdir)
  with pytest.raises(ValueError, match='format version 99; this loader reads version 1. .* export the translator'):
    ExportedTranslator.load(_edited_copy(out_dir, tmp_path, format_version=99))
  shutil.rmtree(tmp_path / 'edited')
  with pytest.raises(ValueError, match="exported for tpu, not for this cpu device. Export again with "
                                       "--platforms=tpu,cpu"):
    ExportedTranslator.load(_edited_copy(out_dir, tmp_path, platforms=['tpu']))
  shutil.rmtree(tmp_path / 'edited')
  greedy_only = ExportedTranslator.load(_edited_copy(out_dir, tmp_path, beam_size=1))
  with pytest.raises(ValueError, match='greedy decoding only .* --beam_size=4'):
    greedy_only.translate(['abc'], beam=True)
  with pytest.raises(ValueError, match='No lines to translate'):
    translator.translate([])
  with pytest.raises(ValueError, match=r'not one string: pass \[text\]'):
    translator.translate('abc')
  with pytest.raises(ValueError, match='need 1 <= n <= the exported beam_size'):
    translator.translate_n_best(['abc'], n=BEAM + 1)
  with pytest.raises(ValueError, match='platforms=cpu,gpu must be distinct names among cpu, cuda, rocm, tpu'):
    export_translator(workdir, str(tmp_path / 'x'), platforms=('cpu', 'gpu'))
  with pytest.raises(FileNotFoundError, match='holds no training run'):
    export_translator(str(tmp_path), str(tmp_path / 'x'))
