"""Real-data throughput: the model of configs/messages_en_fr.py (BiLSTM 256, Luong decoder with general attention
and input feeding) trained on the prepared message-catalog and Bible splits with batches padded to the corpus
maximum (fixed), to their length bucket (bucketed) and to a token budget per bucket (tokens), side by side in one
run, against the PyTorch implementation of the same model (benchmarks/torch_baseline.py, LuongTrainer) on the same
real batches trimmed per batch as PyTorch users do; then greedy and beam-4 decoding sentences/s on the test split.

    python -m experiments.prepare_data --dataset=messages_en_fr        # once, and --dataset=bible_en_es
    python -m benchmarks.real_data                       # both corpora; ~30-40 minutes on 2 CPU cores
    python -m benchmarks.real_data --datasets=messages_en_fr --rounds=2 --steps=3 --decode_examples=128

Target tokens are the real (non-PAD) target tokens; tokens/s is the median over rounds of one round's tokens /
its wall time (every mode and framework runs `--steps` steps per round, rounds interleave them). An epoch's wall
time is the split's target tokens / that rate. Every bucket shape is compiled before timing starts.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.real_data'
CONFIGS = {'messages_en_fr': 'configs/messages_en_fr.py', 'bible_en_es': 'configs/bible_en_es.py'}


def _tasks(dataset: str, quick: bool = False):
  """(config, fixed-shape task, bucketed task) of the dataset's config (the prepared data is required);
  quick: a small model and batches (a smoke test of the script, not a measurement)."""
  from attention_jax.data import make_task
  config = harness.load_config(CONFIGS[dataset])
  if quick:
    config.model.update(embed_dim=16, hidden_dim=16)
    config.train.batch_size, config.eval.batch_size = 16, 32
  bucketed = make_task(config.data)
  fixed_data = config.data.copy_and_resolve_references()
  fixed_data.bucket_boundaries = ()
  return config, make_task(fixed_data), bucketed


def _target_tokens(batch) -> int:
  return int(np.sum(batch['target_out'] != 0))


class JaxMode:
  """One batching mode of attention_jax's training step: its iterator and its compiled step."""

  def __init__(self, name, config, model, task, **iterator_options):
    from attention_jax.tasks import translation
    self.name = name
    self.runner = translation.make_runner(config, model)
    self.state = self.runner.put_state(translation.initial_state(config, task, model))
    self.batches = task.train_iterator(batch_size=int(config.train.batch_size), seed=0, **iterator_options)
    self.shapes: set = set()

  def compile_all(self, expected_shapes: int, max_draws: int = 400) -> None:
    """Runs one step on a batch of every bucket shape (compiling each), so timing sees no compilation."""
    import jax
    for _ in range(max_draws):
      batch = next(self.batches)
      shape = batch['source'].shape
      if shape not in self.shapes:
        self.shapes.add(shape)
        self.state, metrics = self.runner.train_step(self.state, batch)
        jax.block_until_ready(metrics)
      if len(self.shapes) == expected_shapes:
        return

  def run(self, steps: int) -> tuple[int, float, list]:
    """(real target tokens, seconds, the batches) of `steps` steps."""
    import jax
    batches = [next(self.batches) for _ in range(steps)]
    start = time.perf_counter()
    for batch in batches:
      self.state, metrics = self.runner.train_step(self.state, batch)
    jax.block_until_ready(metrics)
    return sum(map(_target_tokens, batches)), time.perf_counter() - start, batches


def _token_budget(task, batch_size: int) -> int:
  """batch_tokens giving the bucketed sentence batches' mean padded tokens per batch."""
  ids = task.buckets.assign(*task.lengths('train'))
  per_example = np.asarray([max(task.buckets.shape(b)) for b in ids])
  return int(batch_size * per_example.mean())


def train_table(dataset: str, steps: int, rounds: int, with_torch: bool,
                quick: bool = False) -> tuple[list[dict], dict]:
  from attention_jax.tasks import translation
  config, fixed, bucketed = _tasks(dataset, quick)
  _, model = translation.build(config)
  batch_size = int(config.train.batch_size)
  budget = _token_budget(bucketed, batch_size)
  modes = [JaxMode('attention_jax fixed (S, T)', config, model, fixed),
           JaxMode('attention_jax bucketed', config, model, bucketed),
           JaxMode(f'attention_jax tokens ({budget} a batch)', config, model, bucketed, batch_type='tokens',
                   batch_tokens=budget)]
  for mode, shapes in zip(modes, (1, len(bucketed.buckets), len(bucketed.buckets))):
    started = time.perf_counter()
    mode.compile_all(shapes)
    print(f'  [{dataset}] {mode.name}: {len(mode.shapes)} shapes compiled in {time.perf_counter() - started:.0f} s',
          flush=True)
  trainer = None
  if with_torch:
    from benchmarks import torch_baseline
    m, t = config.model, config.train
    spec = dict(source_vocab_size=fixed.source_tokenizer.vocab_size,
                target_vocab_size=fixed.target_tokenizer.vocab_size,
                embed_dim=m.embed_dim, hidden_dim=m.hidden_dim, encoder_layers=m.encoder_layers,
                dropout_rate=m.dropout_rate, input_feeding=m.input_feeding, optimizer=t.optimizer,
                learning_rate=t.learning_rate, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
                grad_clip_norm=t.grad_clip_norm, label_smoothing=t.label_smoothing)
    trainer = torch_baseline.LuongTrainer(spec, threads=os.cpu_count() or 1)
    trainer.step(next(fixed.train_iterator(batch_size=batch_size, seed=1)))          # warm-up
  rates: dict[str, list[float]] = {m.name: [] for m in modes}
  torch_runs = {'PyTorch, fixed-mode batches trimmed per batch': 0, 'PyTorch, bucketed batches trimmed per batch': 1}
  if trainer is not None:
    rates.update({name: [] for name in torch_runs})
  for round_index in range(rounds):
    mode_batches = []
    for mode in modes:
      tokens, seconds, batches = mode.run(steps)
      rates[mode.name].append(tokens / seconds)
      mode_batches.append(batches)
    for name, index in torch_runs.items() if trainer is not None else ():
      start = time.perf_counter()
      for batch in mode_batches[index]:                # the very batches attention_jax ran, trimmed per batch
        trainer.step(batch)
      rates[name].append(sum(map(_target_tokens, mode_batches[index])) / (time.perf_counter() - start))
    print(f'  [{dataset}] round {round_index + 1}: ' + ', '.join(f'{k} {v[-1]:.0f} tok/s' for k, v in rates.items()),
          flush=True)
  epoch_tokens = int(np.sum(bucketed.lengths('train')[1]))
  reference = statistics.median(rates[modes[0].name])
  rows = []
  for name, values in rates.items():
    rate = statistics.median(values)
    rows.append({'dataset': dataset, 'run': name, 'target_tokens_per_s': rate,
                 'vs_fixed': rate / reference, 'epoch_minutes': epoch_tokens / rate / 60})
  if trainer is not None:
    fastest_torch = max(statistics.median(rates[name]) for name in torch_runs)
    for row in rows:
      row['vs_pytorch'] = row['target_tokens_per_s'] / fastest_torch      # against the faster PyTorch run
  info = {'train_examples': len(bucketed.kept_indices('train')), 'epoch_target_tokens': epoch_tokens,
          'buckets': list(zip(bucketed.buckets.source_lengths, bucketed.buckets.target_lengths)),
          'batch_size': batch_size, 'batch_tokens': budget, 'fixed_shape': [fixed.max_source_length,
                                                                              fixed.max_target_length]}
  return rows, {'model': model, 'modes': modes, 'trainer': trainer, 'fixed': fixed, 'bucketed': bucketed,
                'config': config, 'info': info}


def decode_table(dataset: str, context: dict, examples: int, torch_examples: int, batch_size: int) -> list[dict]:
  """Greedy and beam-4 sentences/s on the first `examples` test sentences in batches of batch_size, fixed vs
  bucketed batches (PyTorch: the fixed batches trimmed per batch)."""
  import jax
  from attention_jax import decoding
  config, fixed, bucketed = context['config'], context['fixed'], context['bucketed']
  params = jax.device_get(context['modes'][1].runner.get_state(context['modes'][1].state).params)
  model = context['model']
  rows = []
  for beam in (1, 4):
    for name, task in (('attention_jax fixed (S, T)', fixed), ('attention_jax bucketed', bucketed)):
      batches = task.decode_batches('test', batch_size=batch_size, max_examples=examples)
      run = lambda: [decoding.decode(model, params, b['source'], max_length=n, beam_size=beam)
                     for b, n in batches]
      run()                                                           # compiles every bucket shape
      start = time.perf_counter()
      run()
      rows.append({'dataset': dataset, 'decoding': 'greedy' if beam == 1 else f'beam {beam}', 'run': name,
                   'sentences_per_s': examples / (time.perf_counter() - start)})
    trainer = context['trainer']
    if trainer is not None:
      from benchmarks import torch_baseline
      trainer.model.load_state_dict(torch_baseline.luong_params_from_flax(params))
      batches = fixed.decode_batches('test', batch_size=min(batch_size, torch_examples), max_examples=torch_examples)
      start = time.perf_counter()
      for batch, max_length in batches:
        if beam == 1:
          trainer.greedy(batch['source'], max_length)
        else:
          trainer.beam_search(batch['source'], max_length, beam_size=beam,
                              length_penalty=float(config.eval.length_penalty))
      rows.append({'dataset': dataset, 'decoding': 'greedy' if beam == 1 else f'beam {beam}',
                   'run': 'PyTorch (per-batch trimmed)',
                   'sentences_per_s': torch_examples / (time.perf_counter() - start)})
  return rows


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.split('\n')[0], 'results/real_data_throughput/results.json')
  parser.add_argument('--datasets', default='messages_en_fr,bible_en_es')
  parser.add_argument('--steps', type=int, default=4, help='steps per mode per round')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--decode_examples', type=int, default=512)
  parser.add_argument('--torch_decode_examples', type=int, default=128)
  parser.add_argument('--decode_batch_size', type=int, default=64)
  parser.add_argument('--no_torch', action='store_true')
  args = parser.parse_args(argv)
  # attention_jax as experiments/ runs it (before JAX's first computation). PyTorch runs in this process too, so
  # it gets the same glibc malloc settings; JAX's dispatch setting does not concern it.
  from attention_jax import cpu_runtime
  runtime = cpu_runtime.configure()
  runtime += f'; worker threads: {cpu_runtime.place_worker_threads()}'
  with_torch = not args.no_torch
  if with_torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      print('PyTorch is not installed (pip install -r requirements-bench.txt): skipping the PyTorch rows.')
      with_torch = False
  train_rows, decode_rows, infos = [], [], {}
  for dataset in [d for d in args.datasets.split(',') if d]:
    rows, context = train_table(dataset, args.steps, args.rounds, with_torch, args.quick)
    train_rows += rows
    infos[dataset] = context['info']
    decode_rows += decode_table(dataset, context, args.decode_examples, args.torch_decode_examples,
                                args.decode_batch_size)
  machine = harness.machine_info(['torch'])
  columns = ['dataset', 'run', 'target_tokens_per_s', 'vs_fixed'] + (['vs_pytorch'] if with_torch else []) + [
      'epoch_minutes']
  report = [f'# Real-data training and decoding throughput ({machine.get("cpu", "CPU")})', '',
            f'Rerun: `{harness.rerun_command(MODULE)} {" ".join(argv or [])}`'.rstrip(), '',
            harness.markdown_table(train_rows, columns, digits=2), '',
            harness.markdown_table(decode_rows, ['dataset', 'decoding', 'run', 'sentences_per_s'], digits=1), '',
            'Corpora: ' + '; '.join(f'{k}: {v}' for k, v in infos.items()), '',
            f'attention_jax.cpu_runtime.configure(): {runtime} (JAX dispatch; glibc malloc for both frameworks)', '']
  print('\n'.join(report))
  payload = {'machine': machine, 'train': train_rows, 'decode': decode_rows, 'corpora': infos,
             'args': vars(args), 'cpu_runtime': runtime}
  harness.write_json(args.out, payload)
  with open(os.path.join(os.path.dirname(args.out) or '.', 'report.md'), 'w') as f:
    f.write('\n'.join(report))
  return payload


if __name__ == '__main__':
  main()
