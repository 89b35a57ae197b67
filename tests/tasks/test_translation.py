"""End-to-end runs of the tiny config: outputs, resume, kill -9 + restart equality, NaN stop, multi-host,
config flags, translate."""

import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from attention_jax import attention_explorer
from attention_jax import decoding
from attention_jax.special_tokens import EOS_ID
from attention_jax.tasks import translation
from attention_jax.training import checkpointing
from attention_jax.tasks.translation import initial_state, train_and_evaluate
from attention_jax.training.loop import NonFiniteLossError
from attention_jax.training.metrics_writer import read_metrics
from configs import test_tiny

ROOT = __file__.rsplit('/tests/', 1)[0]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


def tiny_config(data_dir, **train):
  config = test_tiny.get_config()
  config.data.data_dir = data_dir
  for key, value in train.items():
    config.train[key] = value
  return config


def final_params(config, workdir):
  task, model = translation.build(config)
  abstract = checkpointing.abstract_like(initial_state(config, task, model))
  state, data_state = checkpointing.Checkpoints(workdir, best_metric=None).restore_latest(abstract)
  return jax.device_get(state), data_state


def run_cli(args, env_extra=None, **kwargs):
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu', **(env_extra or {})}
  return subprocess.Popen([sys.executable, '-m', *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope='module')
def tiny_run(data_dir, tmp_path_factory):
  """(config, workdir, test results, final state) of one uninterrupted 20-step run of the tiny config."""
  workdir = str(tmp_path_factory.mktemp('run'))
  config = tiny_config(data_dir)
  results = train_and_evaluate(config, workdir)
  return config, workdir, results, final_params(config, workdir)[0]


def test_run_writes_metrics_heatmaps_and_resumes(tiny_run):
  config, workdir, results, _ = tiny_run
  for name in ('config.json', 'vocab.json', 'metrics.jsonl', 'test_results.json', 'report.md',
               'heatmaps/test_00.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '15', '20']   # keep_checkpoints=3
  assert os.listdir(os.path.join(workdir, 'best')) in (['10'], ['20'])
  records = read_metrics(workdir)
  assert [r['step'] for r in records if r['split'] == 'train'] == [5, 10, 15, 20]
  assert {'validation', 'test', 'test_long'} <= {r['split'] for r in records}
  for key in ('loss', 'perplexity', 'token_accuracy', 'greedy/bleu', 'greedy/chrf', 'aer', 'argmax_accuracy',
              'greedy/exact_match', 'test_long/greedy/exact_match'):
    assert np.isfinite(results[key]), key
  np.testing.assert_allclose(results['perplexity'], np.exp(results['loss']), rtol=1e-5)
  validation = [r for r in records if r['split'] == 'validation']
  assert [r['step'] for r in validation] == [10, 20] and validation[-1]['loss'] < validation[0]['loss']
  assert {'bleu', 'exact_match', 'aer', 'perplexity'} <= set(validation[-1])
  state, data_state = final_params(config, workdir)
  assert int(state.step) == 20 and data_state == {'next_index': 20}
  _check_report_explorer(config, workdir, results, state)
  _check_tensorboard_heatmaps(config, workdir, state)


@pytest.mark.slow
def test_asking_for_more_steps_continues_the_run(tiny_run):
  """Rerunning with num_steps 25 continues from the checkpoint at step 20 instead of starting over."""
  config, workdir, _, _ = tiny_run
  config = tiny_config(config.data.data_dir, num_steps=25)
  train_and_evaluate(config, workdir)
  assert [r['step'] for r in read_metrics(workdir) if r['split'] == 'train'][-2:] == [20, 25]
  assert int(final_params(config, workdir)[0].step) == 25


def tensorboard_images(directory):
  """{(tag, step): uint8 [H, W, 3]} of every image in the TensorBoard event files under `directory`."""
  import io
  import struct
  import matplotlib.image
  from tensorboardX.proto import event_pb2
  images = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):              # TFRecord: length u64, crc u32, payload, crc u32
      length, = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        if value.HasField('image'):
          pixels = matplotlib.image.imread(io.BytesIO(value.image.encoded_image_string), format='png')
          images[(value.tag, event.step)] = np.round(pixels[..., :3] * 255).astype(np.uint8)
  return images


def _check_tensorboard_heatmaps(config, workdir, final_state):
  """At each evaluation (steps 10 and 20) the teacher-forced attention of the first 2 validation sentences is logged
  as an image; the last ones are the final parameters' attention, pixel for pixel."""
  from attention_jax import visualization
  images = tensorboard_images(os.path.join(workdir, 'tensorboard'))
  assert sorted(images) == [(f'validation/attention_{i}', step) for i in (0, 1) for step in (10, 20)]
  assert not np.array_equal(images[('validation/attention_0', 10)], images[('validation/attention_0', 20)])
  task, model = translation.build(config)
  batch = task.eval_batches('validation', batch_size=2, max_examples=2)[0]
  _, weights = model.apply({'params': final_state.params}, batch['source'], batch['target_in'])
  for i in (0, 1):
    expected = visualization.attention_pixels(
        np.asarray(weights)[i], task.source_tokenizer.tokens(batch['source'][i]),
        task.target_tokenizer.tokens(batch['target_out'][i]), title=f'validation {i}, teacher-forced',
        gold=batch['alignment'][i])
    logged = images[(f'validation/attention_{i}', 20)]
    assert logged.shape == expected.shape and np.mean(logged != expected) < 1e-3   # jit vs eager: a rare pixel


def _check_report_explorer(config, workdir, results, state):
  """explorer.html of the test report: per example the teacher-forced reference with its attention and gold
  links, and the greedy output with its attention, as the final parameters give them; the views carry the scores."""
  data = attention_explorer.read_explorer_data(os.path.join(workdir, 'explorer.html'))
  assert [v['name'] for v in data['views']] == ['teacher-forced', 'greedy']
  assert data['views'][0]['metrics']['aer'] == pytest.approx(results['aer'])
  assert data['views'][1]['metrics']['bleu'] == pytest.approx(results['greedy/bleu'])
  task, model = translation.build(config)
  batch = task.eval_batches('test', batch_size=2, max_examples=2)[0]
  _, forced = model.apply({'params': state.params}, batch['source'], batch['target_in'])
  tokens, weights = decoding.greedy_decode(model, state.params, batch['source'], max_length=task.max_target_length)
  assert len(data['sentences']) == config.eval.num_heatmaps == 2
  for i, sentence in enumerate(data['sentences']):
    reference, greedy = sentence['hypotheses']
    s = len(sentence['source'])
    assert reference['tokens'] == task.target_tokenizer.tokens(batch['target_out'][i])
    t = len(reference['tokens'])
    np.testing.assert_allclose(reference['weights'], np.asarray(forced)[i, :t, :s], atol=5e-5)
    assert reference['gold'] == np.argwhere(batch['alignment'][i, :t, :s] != 0).tolist()
    assert greedy['tokens'] == task.target_tokenizer.tokens(tokens[i])
    np.testing.assert_allclose(greedy['weights'], np.asarray(weights)[i, :len(greedy['tokens']), :s], atol=5e-5)
  assert '(explorer.html)' in open(os.path.join(workdir, 'report.md')).read()


def test_translate_prints_translations_and_saves_heatmaps(tiny_run, tmp_path):
  config, workdir, _, _ = tiny_run
  output_dir = str(tmp_path / 'translations')
  sentences = ['abc', 'dcba e']
  process = run_cli(['experiments.translate', f'--workdir={workdir}', f'--output_dir={output_dir}',
                     '--checkpoint=latest'], stdin=subprocess.PIPE)
  out, err = process.communicate('\n'.join(sentences) + '\n', timeout=120)
  assert process.returncode == 0, err[-3000:]
  lines = [line.split('\t') for line in out.strip().splitlines()]
  assert [line[0] for line in lines] == sentences
  for _, _, path in lines:
    assert os.path.exists(path) and os.path.dirname(path) == output_dir
  # The printed translations are the greedy decodes of the latest checkpoint's parameters.
  task, model = translation.build(config)
  state, _ = final_params(config, workdir)
  source = np.zeros((2, task.max_source_length), np.int32)
  for i, sentence in enumerate(sentences):
    ids = task.source_tokenizer.encode(sentence) + [EOS_ID]
    source[i, :len(ids)] = ids
  tokens, _ = decoding.greedy_decode(model, state.params, source, max_length=task.max_target_length)
  assert [line[1] for line in lines] == [task.target_tokenizer.decode(t) for t in np.asarray(tokens)]


@pytest.mark.slow
def test_translating_a_file_keeps_the_order_and_equals_one_by_one(tiny_run, tmp_path):
  """--input/--output: batched by length (batch 2 over 5 lines of mixed lengths, an empty one kept empty), the
  same outputs as translating each sentence alone at the full padded length."""
  from attention_jax.tasks.translation_inference import translate, translate_lines
  _, workdir, _, _ = tiny_run
  lines = ['dcba e', 'abc', '', 'a', 'abcdeab cd']
  alone = [result.output for result in translate([l for l in lines if l], workdir, str(tmp_path / "png"),
                                                 which='latest')]
  batched = translate_lines(lines, workdir, which='latest', batch_size=2)
  assert batched[2] == '' and [b for i, b in enumerate(batched) if i != 2] == alone
  (tmp_path / 'in.txt').write_text('\n'.join(lines) + '\n')
  process = run_cli(['experiments.translate', f'--workdir={workdir}', '--checkpoint=latest', '--batch_size=2',
                     f'--input={tmp_path / "in.txt"}', f'--output={tmp_path / "out.txt"}'])
  _, err = process.communicate(timeout=120)
  assert process.returncode == 0, err[-3000:]
  assert (tmp_path / 'out.txt').read_text().split('\n')[:-1] == batched


@pytest.mark.slow
def test_killed_run_restarts_to_the_same_parameters(tiny_run, tmp_path):
  config, _, _, uninterrupted = tiny_run
  workdir = str(tmp_path / 'killed')
  command = ['--config=configs/test_tiny.py', f'--config.data.data_dir={config.data.data_dir}',
             f'--workdir={workdir}']
  # kill -9 of the training process right after it starts saving step 10 (of 20), mid-save.
  killed = run_cli(['tests.helpers.kill_during_save', *command], env_extra={'KILL_AT_STEP': '10'})
  _, err = killed.communicate(timeout=300)
  assert killed.returncode == -signal.SIGKILL, err[-3000:]
  complete = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert complete and complete[-1] in (5, 10), complete
  # Rerunning the same command resumes from the newest complete checkpoint and finishes the run.
  restarted = run_cli(['experiments.train', *command])
  out, err = restarted.communicate(timeout=300)
  assert restarted.returncode == 0, err[-3000:]
  assert f'Resumed from {workdir}/checkpoints at step {complete[-1]}.' in out
  # Bit-identical to the uninterrupted run: parameters, optimiser state, PRNG key and data position.
  state, data_state = final_params(config, workdir)
  assert int(state.step) == int(uninterrupted.step) == 20 and data_state == {'next_index': 20}
  jax.tree.map(np.testing.assert_array_equal, state.params, uninterrupted.params)
  jax.tree.map(np.testing.assert_array_equal, state.opt_state, uninterrupted.opt_state)
  np.testing.assert_array_equal(state.rng, uninterrupted.rng)


BUCKETED = {'bucket_boundaries': (4, 5)}


@pytest.mark.slow
def test_killed_bucketed_token_budget_run_restarts_to_the_same_parameters(data_dir, tmp_path):
  """kill -9 mid-save with length buckets and a token budget: the restart resumes the (epoch, batch) schedule and
  ends bit-identical to an uninterrupted run."""
  config = tiny_config(data_dir, batch_type='tokens', batch_tokens=64, eval_every=20)
  config.data.update(BUCKETED)
  config.eval.update(num_heatmaps=0, validation_bleu=False)
  uninterrupted_dir = str(tmp_path / 'once')
  train_and_evaluate(config, uninterrupted_dir)
  uninterrupted, want_data = final_params(config, uninterrupted_dir)
  workdir = str(tmp_path / 'killed')
  command = ['--config=configs/test_tiny.py', f'--config.data.data_dir={data_dir}', f'--workdir={workdir}',
             '--config.data.bucket_boundaries=(4, 5)', '--config.train.batch_type=tokens',
             '--config.train.batch_tokens=64', '--config.train.eval_every=20', '--config.eval.num_heatmaps=0',
             '--config.eval.validation_bleu=False']
  killed = run_cli(['tests.helpers.kill_during_save', *command], env_extra={'KILL_AT_STEP': '15'})
  _, err = killed.communicate(timeout=300)
  assert killed.returncode == -signal.SIGKILL, err[-3000:]
  restarted = run_cli(['experiments.train', *command])
  out, err = restarted.communicate(timeout=300)
  assert restarted.returncode == 0, err[-3000:]
  assert 'Resumed from' in out and 'compiling the step for batch shape' in err + out
  state, data_state = final_params(config, workdir)
  assert data_state == want_data and set(data_state) == {'epoch', 'batch'}
  jax.tree.map(np.testing.assert_array_equal, state.params, uninterrupted.params)
  jax.tree.map(np.testing.assert_array_equal, state.opt_state, uninterrupted.opt_state)


@pytest.mark.slow
def test_nonfinite_loss_stops_the_run_naming_the_step(data_dir, tmp_path):
  workdir = str(tmp_path / 'nan')
  config = tiny_config(data_dir, learning_rate=1e30, warmup_steps=0, grad_clip_norm=0.0, checkpoint_every=1,
                       log_every=1, num_steps=50)
  with pytest.raises(NonFiniteLossError, match=r'Non-finite loss or gradient at step (\d+)') as error:
    train_and_evaluate(config, workdir)
  bad_step = int(error.value.args[0].split('at step ')[1].split('.')[0])
  state, _ = final_params(config, workdir)
  assert int(state.step) == bad_step                    # the last good state was saved, the bad step was not
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_train_cli_rejects_typos_and_bad_values_before_building_data(tmp_path):
  """The real entry point (flag parsing and validation); tests/test_configs.py covers the cases in-process."""
  bad = run_cli(['experiments.train', '--config=configs/test_tiny.py', '--config.model.scorr=dot',
                 f'--workdir={tmp_path}'])
  _, err = bad.communicate(timeout=120)
  assert bad.returncode != 0 and 'scorr' in err
  bad = run_cli(['experiments.train', '--config=configs/test_tiny.py', '--config.train.parallel=dp',
                 f'--workdir={tmp_path}', f'--config.data.data_dir={tmp_path / "data"}'])
  _, err = bad.communicate(timeout=120)
  assert bad.returncode != 0 and "Unknown parallel mode 'dp'. Valid modes: sharded, pmap, single" in err
  assert not os.path.exists(tmp_path / 'data')                   # failed before building the dataset


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_two_processes_train_in_lock_step(data_dir, tmp_path, mode):
  port = str(_free_port())
  workdir = str(tmp_path / 'multihost')
  workers = [run_cli(['tests.helpers.multihost_worker', port, str(i), workdir, data_dir, mode]) for i in range(2)]
  outputs = [w.communicate(timeout=300) for w in workers]
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  lines = [next(l for l in out.splitlines() if l.startswith('PROCESS')) for out, _ in outputs]
  assert {l.split()[1] for l in lines} == {'0', '1'} and all('OF 2 STEP 8' in l for l in lines)
  assert len({l.split('CHECKSUM')[1] for l in lines}) == 1, lines     # same parameters and loss on both
  train_losses = [r['loss'] for r in read_metrics(workdir) if r['split'] == 'train']   # steps 4 and 8
  assert len(train_losses) == 2 and train_losses[1] < train_losses[0], train_losses
