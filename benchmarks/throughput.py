"""Training throughput (target tokens/s) of one translation model in attention_jax, PyTorch and Keras.

    python -m benchmarks.throughput                 # full run (~2-4 minutes on 2 cores)
    python -m benchmarks.throughput --quick         # smoke test: QUICK_SPEC's tiny model, few rounds (< 60 s)
    python -m benchmarks.throughput --frameworks attention_jax,pytorch
    python -m benchmarks.throughput --frameworks attention_jax --baseline_tree ../before   # before/after a change

The model (the same in all three; parameter counts are printed): GRU encoder (unidirectional), Bahdanau
decoder (attention from the previous state, context fed to the GRU, readout tanh(W[s; c; y]) -> vocabulary),
additive attention, embeddings/hidden/attention size 256, vocabulary 4000 on both sides, batch 64 of
20-token sources and targets (no padding, so every implementation computes the same function), Adam 1e-3,
mean token cross-entropy, teacher forcing.
  attention_jax  `models.build_model` + `training.steps.train_step` under `jax.jit` (decoder = `nn.scan`), in a
                 process set up as experiments/ sets it up (`cpu_runtime.configure()`, then once JAX has started
                 `cpu_runtime.place_worker_threads()`; --cpu_runtime)
  pytorch        benchmarks/torch_baseline.py (the PyTorch seq2seq tutorial's structure: eager, Python loop)
  keras          benchmarks/keras_baseline.py (the TF NMT tutorial's structure: `tf.function` train step)

Each framework runs in its own worker process (so thread pools do not interfere), all started by this
script and kept alive; after warm-up the workers are driven in interleaved rounds (only one computes at a
time, the order rotates every round), so load from other processes hits all of them alike. A step is timed
from the numpy batch to the loss on the host (`.item()` / `.numpy()` / `float()`, which synchronise).
Reported: the median step time over all timed steps and tokens/s = B * T / median, and the fastest round's
median per framework (`best_round_ms`), which approximates an uncontended machine when other processes share
the cores (PyTorch's OpenMP threads slow down by 10x or more when a core is taken by another process).
Decoding: each turn decodes two batches after the idle time; `after_idle_ms` is the median of the first (which
wakes the threads), `back_to_back_ms` of the second, `median_batch_ms` of both.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.throughput'
FRAMEWORKS = ('attention_jax', 'pytorch', 'keras')
SPEC = {
    'vocab_size': 4000,
    'embed_dim': 256,
    'hidden_dim': 256,
    'attention_dim': 256,
    'batch_size': 64,
    'source_length': 20,
    'target_length': 20,
    'learning_rate': 1e-3,
}
# The same model at tiny sizes: every benchmark's --quick smoke run.
QUICK_SPEC = {**SPEC, 'vocab_size': 300, 'embed_dim': 32, 'hidden_dim': 32, 'attention_dim': 32,
              'batch_size': 8, 'source_length': 6, 'target_length': 5}
from attention_jax.special_tokens import BOS_ID, EOS_ID, FIRST_TOKEN_ID  # noqa: E402
BEAM_SIZE = 4
BASELINE = 'attention_jax_baseline'   # attention_jax of another checkout (--baseline_tree)
# Idle time before each worker's turn: thread pools that spin-wait after their work (OpenMP, Eigen) go quiet
# before the next framework computes, so no framework runs while another's threads still hold a core.
PAUSE_S = 0.5
DECODE_MODES = ('greedy', 'beam')
PROTOCOL = '@@'   # prefix of the worker's protocol lines (libraries may print to stdout too)
# --cpu_runtime: 'library': attention_jax's worker calls cpu_runtime.configure() first and places XLA's worker
# threads once JAX has started, as every `python -m experiments.*` process does, and the peers run on their
# defaults; 'all': the peers get the same glibc malloc settings too (from the environment; JAX's dispatch setting
# and thread placement have no peer equivalent); 'default': nobody changes anything.
CPU_RUNTIME = ('library', 'all', 'default')


def make_batches(spec: dict, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`count` batches in the project's batch format: source [B, S], target_in / target_out [B, T] int32."""
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(count):
    shape = (spec['batch_size'],)
    words_s = rng.integers(FIRST_TOKEN_ID, spec['vocab_size'], size=(*shape, spec['source_length'] - 1))
    words_t = rng.integers(FIRST_TOKEN_ID, spec['vocab_size'], size=(*shape, spec['target_length'] - 1))
    batches.append({
        'source': np.concatenate([words_s, np.full((*shape, 1), EOS_ID)], 1).astype(np.int32),
        'target_in': np.concatenate([np.full((*shape, 1), BOS_ID), words_t], 1).astype(np.int32),
        'target_out': np.concatenate([words_t, np.full((*shape, 1), EOS_ID)], 1).astype(np.int32),
    })
  return batches


def model_config(spec: dict) -> dict:
  """attention_jax's config.model for the benchmark model."""
  return {'encoder': 'gru', 'decoder': 'bahdanau', 'decoder_cell': 'gru', 'scorer': 'additive',
          'scorer_options': {'hidden_dim': spec['attention_dim']}, 'embed_dim': spec['embed_dim'],
          'hidden_dim': spec['hidden_dim'], 'dropout_rate': 0.0}


def _sequence_loss(model):
  """`tasks.translation.sequence_loss` bound to `model`, or, where the data stack (grain, tfds) that module needs
  is not installed (a bare accelerator image with jax, flax and optax), the same sum of
  `training.sequence_losses.token_losses` over the non-PAD targets with its metric sums."""
  try:
    from attention_jax.tasks import translation
    return functools.partial(translation.sequence_loss, model=model)
  except ImportError:
    import jax.numpy as jnp
    from attention_jax.special_tokens import PAD_ID
    from attention_jax.training.sequence_losses import sequence_metric_sums, token_losses

    def loss_fn(params, batch, rng, *, train):
      logits, _ = model.apply({'params': params}, batch['source'], batch['target_in'], train=train,
                              rngs={'dropout': rng})
      losses = token_losses(logits, batch['target_out'], 0.0)
      metrics = sequence_metric_sums(logits, batch['target_out'], losses)
      return jnp.sum(losses * (batch['target_out'] != PAD_ID)), metrics['token_count'], metrics

    return loss_fn


class JaxTrainer:
  """attention_jax: build_model + optax Adam + the training package's pure train_step, jitted."""

  name = 'attention_jax'

  def __init__(self, spec: dict, threads: int):
    import jax
    import optax
    from attention_jax.models import build_model
    from attention_jax.training import steps

    self.device = str(jax.devices()[0])
    where = (f'XLA CPU default thread pool ({os.cpu_count()} cores)' if jax.default_backend() == 'cpu'
             else self.device)
    self.settings = f'jax {jax.__version__}, jit, {where}'
    del threads   # XLA sizes its pool from the visible cores; every framework gets the same 2 cores
    sizes = dict(source_vocab_size=spec['vocab_size'], target_vocab_size=spec['vocab_size'],
                 max_source_length=spec['source_length'])
    model = build_model(model_config(spec), **sizes)
    example = make_batches(spec, 1)[0]
    self.state = steps.create_train_state(model, optax.adam(spec['learning_rate']), 0, example['source'],
                                          example['target_in'])
    self.num_params = int(sum(x.size for x in jax.tree.leaves(self.state.params)))
    train_step = functools.partial(steps.train_step, loss_fn=_sequence_loss(model))
    self._step = jax.jit(train_step, donate_argnums=0)
    from attention_jax import decoding
    self.model, self.decoding = model, decoding

  def decode(self, mode: str, source: np.ndarray, max_length: int) -> np.ndarray:
    """greedy | beam (K = 4, length penalty 0.6): source [B, S] -> tokens [B, max_length] on the host."""
    if mode == 'greedy':
      tokens, _ = self.decoding.greedy_decode(self.model, self.state.params, source, max_length=max_length)
    else:
      tokens, _ = self.decoding.beam_search(self.model, self.state.params, source, max_length=max_length,
                                            beam_size=BEAM_SIZE, length_penalty=0.6)
    return np.asarray(tokens)                                   # synchronises

  def compile(self, batch: dict[str, np.ndarray]):
    """Compiles the step ahead of time for batches shaped like `batch` (what is traced later, e.g. a routed
    dot_general, no longer changes it), steps with that executable from now on, and returns it (`.as_text()`
    is its optimised HLO)."""
    self._step = self._step.lower(self.state, batch).compile()
    return self._step

  def step(self, batch: dict[str, np.ndarray]) -> float:
    self.state, metrics = self._step(self.state, batch)
    return float(metrics['loss_sum'] / metrics['token_count'])   # float() synchronises

  def timed_steps(self, batches: list[dict[str, np.ndarray]]) -> tuple[list[float], float]:
    times, loss = [], 0.0
    for batch in batches:
      start = time.perf_counter()
      loss = self.step(batch)
      times.append(time.perf_counter() - start)
    return times, loss


def _trainer(framework: str, spec: dict, threads: int):
  if framework == 'attention_jax':
    return JaxTrainer(spec, threads)
  if framework == 'pytorch':
    from benchmarks import torch_baseline
    return torch_baseline.Trainer(spec, threads)
  if framework == 'keras':
    from benchmarks import keras_baseline
    return keras_baseline.Trainer(spec, threads)
  raise ValueError(f'Unknown framework {framework!r}. Valid frameworks: {", ".join(FRAMEWORKS)}.')


def _send(message: dict) -> None:
  print(PROTOCOL + json.dumps(message), flush=True)


def run_worker(framework: str, threads: int, warmup: int, configure_cpu_runtime: bool, spec: dict) -> None:
  """Builds one framework's trainer, warms it up, then answers 'steps N' lines on stdin until 'quit'.

  configure_cpu_runtime: attention_jax's `cpu_runtime.configure()` first, before JAX's first computation.
  spec: SPEC, or QUICK_SPEC under --quick."""
  from attention_jax import cpu_runtime
  runtime = 'default'
  if configure_cpu_runtime:
    runtime = cpu_runtime.configure()
  elif all(os.environ.get(k) == v for k, v in cpu_runtime.MALLOC_ENVIRONMENT.items()):
    runtime = 'glibc malloc settings of attention_jax.cpu_runtime (environment)'
  start = time.perf_counter()
  trainer = _trainer(framework, spec, threads)
  trainer.settings += f'; CPU runtime: {runtime}'
  batches = make_batches(spec, 8, seed=1)
  setup = time.perf_counter() - start
  first_times, _ = trainer.timed_steps(batches[:1])            # compiles / traces
  if configure_cpu_runtime and framework.startswith('attention_jax'):
    # As the entry points do once JAX has started (experiments.start_jax); another checkout may predate it.
    place = getattr(cpu_runtime, 'place_worker_threads', None)
    trainer.settings += f'; worker threads: {place() if place else "not placed (no place_worker_threads)"}'
  warm_times, loss = trainer.timed_steps(batches[1:1 + warmup])
  _send({'ready': framework, 'settings': trainer.settings, 'num_params': trainer.num_params, 'setup_s': setup,
         'first_step_s': first_times[0], 'warmup_ms': [1e3 * t for t in warm_times], 'loss': loss})
  cursor = 0
  for line in sys.stdin:
    command = line.split()
    if not command or command[0] == 'quit':
      break
    if command[0] not in ('steps', 'decode'):
      raise ValueError(f'unknown worker command {line.strip()!r}: expected "steps N", "decode MODE N" or "quit"')
    count = int(command[-1])
    chosen = [batches[(cursor + i) % len(batches)] for i in range(count)]
    cursor += count
    if command[0] == 'decode':            # 'decode greedy|beam N': N batches decoded, each timed
      if not hasattr(trainer, 'decode'):
        _send({'unsupported': True})
        continue
      times = []
      for batch in chosen:
        start = time.perf_counter()
        trainer.decode(command[1], batch['source'], spec['target_length'])
        times.append(time.perf_counter() - start)
      _send({'times': times})
      continue
    times, loss = trainer.timed_steps(chosen)
    _send({'times': times, 'loss': loss})


class _Worker:
  """A running worker process and its protocol."""

  def __init__(self, framework: str, threads: int, warmup: int, cpu_runtime: str, tree: str | None = None,
               quick: bool = False):
    """tree: run attention_jax from this checkout instead (another commit: a before/after comparison), as that
    checkout's worker runs it (a checkout older than QUICK_SPEC trains its full-size model under --quick).
    cpu_runtime: one of CPU_RUNTIME. quick: QUICK_SPEC's model instead of SPEC's."""
    self.framework = framework
    command = [sys.executable, '-m', MODULE, '--worker', 'attention_jax' if tree else framework,
               '--threads', str(threads), '--warmup', str(warmup)] + (['--quick'] if quick else [])
    env = dict(os.environ)
    if not tree:
      command += ['--configure_cpu_runtime', str(int(framework == 'attention_jax' and cpu_runtime != 'default'))]
      if framework != 'attention_jax' and cpu_runtime == 'all':
        from attention_jax.cpu_runtime import MALLOC_ENVIRONMENT
        env.update(MALLOC_ENVIRONMENT)
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    cwd=tree or os.getcwd(), env=env)

  def receive(self) -> dict:
    for line in self.process.stdout:
      if line.startswith(PROTOCOL):
        return json.loads(line[len(PROTOCOL):])
    raise RuntimeError(f'the {self.framework} worker exited with code {self.process.wait()} (see its stderr above)')

  def run_steps(self, count: int) -> dict:
    self.process.stdin.write(f'steps {count}\n')
    self.process.stdin.flush()
    return self.receive()

  def run_decode(self, mode: str, count: int) -> dict:
    self.process.stdin.write(f'decode {mode} {count}\n')
    self.process.stdin.flush()
    return self.receive()

  def close(self) -> None:
    if self.process.poll() is None:
      try:
        self.process.stdin.write('quit\n')
        self.process.stdin.flush()
      except BrokenPipeError:
        pass
      self.process.wait(timeout=60)


def available(framework: str) -> bool:
  package = {'attention_jax': 'jax', 'pytorch': 'torch',
             'keras': 'tensorflow'}[framework]
  return harness.package_version(package) is not None or (framework == 'keras' and
                                                           harness.package_version('tensorflow-cpu') is not None)


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/throughput.json')
  parser.add_argument('--frameworks', default=','.join(FRAMEWORKS), help='comma-separated subset of ' +
                      ', '.join(FRAMEWORKS))
  parser.add_argument('--threads', type=int, default=2, help='torch / TF intra-op threads')
  parser.add_argument('--rounds', type=int, default=None, help='interleaved rounds')
  parser.add_argument('--steps', type=int, default=None, help='timed steps per framework per round')
  parser.add_argument('--warmup', type=int, default=3, help='untimed steps after the first (compiling) one')
  parser.add_argument('--baseline_tree', default=None,
                      help='a checkout of another commit (e.g. `git worktree add ../before <commit>`): its '
                           'attention_jax trains and decodes alongside as attention_jax_baseline')
  parser.add_argument('--decode_rounds', type=int, default=None,
                      help='interleaved rounds of greedy and beam-4 decoding (2 batches each; 0: none)')
  parser.add_argument('--cpu_runtime', default='library', choices=CPU_RUNTIME,
                      help="'library': attention_jax's worker calls cpu_runtime.configure() and "
                           "place_worker_threads() (as experiments/ does); 'all': the peers also get its glibc "
                           "malloc settings; 'default': none")
  parser.add_argument('--worker', default=None, help=argparse_hidden())
  parser.add_argument('--configure_cpu_runtime', type=int, default=1, help=argparse_hidden())
  args = parser.parse_args(argv)
  spec = QUICK_SPEC if args.quick else SPEC
  if args.worker:
    run_worker(args.worker, args.threads, args.warmup, bool(args.configure_cpu_runtime), spec)
    return {}

  rounds = args.rounds or (2 if args.quick else 10)
  steps_per_round = args.steps or (2 if args.quick else 5)
  requested = [f.strip() for f in args.frameworks.split(',') if f.strip()]
  frameworks = [f for f in requested if available(f)]
  for f in set(requested) - set(frameworks):
    print(f'skipping {f}: not installed (pip install -r requirements-bench.txt)')
  if args.baseline_tree:
    frameworks.append(BASELINE)
  info = harness.machine_info(('torch', 'tensorflow-cpu', 'tensorflow', 'keras'))
  print(f'# training throughput on {info["cpu"]} ({info["cpu_count"]} cores); {rounds} interleaved rounds x '
        f'{steps_per_round} steps per framework\n', flush=True)

  workers, ready = {}, {}
  try:
    for framework in frameworks:          # started one at a time so their compile times do not overlap
      workers[framework] = _Worker(framework, args.threads, args.warmup, args.cpu_runtime,
                                   tree=args.baseline_tree if framework == BASELINE else None, quick=args.quick)
      ready[framework] = workers[framework].receive()
      if framework == BASELINE:
        ready[framework]['settings'] += f'; the checkout {args.baseline_tree} at {_commit(args.baseline_tree)}'
      print(f'  {framework:14s} ready: {ready[framework]["num_params"]:,} params, first step (compile/trace) '
            f'{ready[framework]["first_step_s"]:.1f} s; {ready[framework]["settings"]}', flush=True)
    load_before = harness.load_average()
    times = {f: [] for f in frameworks}
    round_medians = {f: [] for f in frameworks}
    for r in range(rounds):
      order = frameworks[r % len(frameworks):] + frameworks[:r % len(frameworks)]
      for framework in order:
        time.sleep(PAUSE_S)
        result = workers[framework].run_steps(steps_per_round)
        times[framework].extend(result['times'])
        round_medians[framework].append(1e3 * statistics.median(result['times']))
      print(f'  round {r + 1}/{rounds}: ' + ', '.join(f'{f} {round_medians[f][-1]:.1f} ms' for f in frameworks),
            flush=True)
    decode_rounds = args.decode_rounds if args.decode_rounds is not None else (1 if args.quick else 4)
    decode_times = _decode_rounds(workers, frameworks, decode_rounds)
    load_after = harness.load_average()
  finally:
    for worker in workers.values():
      worker.close()

  tokens = spec['batch_size'] * spec['target_length']
  rows = []
  for framework in frameworks:
    median_s = statistics.median(times[framework])
    rows.append({'framework': framework, 'params': ready[framework]['num_params'],
                 'median_step_ms': 1e3 * median_s,
                 'p25_ms': 1e3 * float(np.percentile(times[framework], 25)),
                 'p75_ms': 1e3 * float(np.percentile(times[framework], 75)),
                 'tokens_per_s': tokens / median_s, 'first_step_s': ready[framework]['first_step_s'],
                 'best_round_ms': min(round_medians[framework]),
                 'best_round_tokens_per_s': tokens / (min(round_medians[framework]) / 1e3),
                 'settings': ready[framework]['settings'], 'steps_timed': len(times[framework]),
                 'round_medians_ms': round_medians[framework], 'final_loss': ready[framework]['loss']})
  reference = next((r for r in rows if r['framework'] == 'attention_jax'), None)
  for row in rows:
    row['attention_jax_speedup'] = (reference['tokens_per_s'] / row['tokens_per_s']) if reference else None
    # The fastest round of each framework approximates an uncontended machine (other processes share the cores).
    row['speedup_best_rounds'] = (reference['best_round_tokens_per_s'] / row['best_round_tokens_per_s']
                                  if reference else None)

  command = harness.rerun_command(MODULE)
  print(f'\n## Training throughput (median of {rounds * steps_per_round} steps per framework, {rounds} '
        f'interleaved rounds; batch {spec["batch_size"]} x {spec["target_length"]} target tokens)\n')
  print(harness.markdown_table(rows, ['framework', 'params', 'median_step_ms', 'p25_ms', 'p75_ms', 'tokens_per_s',
                                      'attention_jax_speedup', 'best_round_ms', 'speedup_best_rounds',
                                      'first_step_s'], digits=2))
  decode_rows = []
  for (framework, mode), mode_times in decode_times.items():
    median_s = statistics.median(mode_times)
    decode_rows.append({'framework': framework, 'decoding': 'greedy' if mode == 'greedy' else f'beam {BEAM_SIZE}',
                        'median_batch_ms': 1e3 * median_s, 'sentences_per_s': spec['batch_size'] / median_s,
                        'batches_timed': len(mode_times),
                        # Each turn decodes two batches after PAUSE_S of idleness: the first wakes the threads.
                        'after_idle_ms': 1e3 * statistics.median(mode_times[0::2]),
                        'back_to_back_ms': 1e3 * statistics.median(mode_times[1::2])})
  for row in decode_rows:
    reference_row = next((r for r in decode_rows if r['framework'] == 'attention_jax' and
                          r['decoding'] == row['decoding']), None)
    row['attention_jax_speedup'] = (reference_row['sentences_per_s'] / row['sentences_per_s']
                                    if reference_row else None)
  if decode_rows:
    print(f'\n## Decoding (batches of {spec["batch_size"]} sources, {spec["target_length"]} output positions, '
          f'every step run; median over {decode_rounds} interleaved rounds of 2 batches)\n')
    print(harness.markdown_table(decode_rows, ['framework', 'decoding', 'median_batch_ms', 'sentences_per_s',
                                               'attention_jax_speedup', 'after_idle_ms', 'back_to_back_ms'],
                                 digits=2))
  print('\n' + '\n'.join(f'- {r["framework"]}: {r["settings"]}' for r in rows))
  print(f'\nload average before/after: {load_before} / {load_after}')
  print(f'rerun: {command}')
  result = {'machine': info, 'command': command, 'spec': spec, 'rounds': rounds, 'steps_per_round': steps_per_round,
            'cpu_runtime': args.cpu_runtime, 'load_average_before': load_before, 'load_average_after': load_after,
            'rows': rows,
            'decode_rows': decode_rows}
  harness.write_json(args.out, result)
  return result


def _decode_rounds(workers: dict, frameworks: list[str], rounds: int) -> dict[tuple[str, str], list[float]]:
  """Greedy and beam decoding, each framework's first call (compilation) untimed, then `rounds` interleaved
  rounds of 2 batches -> {(framework, mode): batch times in seconds, in pairs: the batch after PAUSE_S of
  idleness, then the one right after it} for the frameworks that decode."""
  if rounds <= 0:
    return {}
  decoders = [f for f in frameworks if not workers[f].run_decode('greedy', 1).get('unsupported')]
  for framework in decoders:
    workers[framework].run_decode('beam', 1)
  times = {(f, mode): [] for f in decoders for mode in DECODE_MODES}
  for r in range(rounds):
    order = decoders[r % max(len(decoders), 1):] + decoders[:r % max(len(decoders), 1)]
    for mode in DECODE_MODES:
      for framework in order:
        time.sleep(PAUSE_S)
        times[(framework, mode)].extend(workers[framework].run_decode(mode, 2)['times'])
    print(f'  decoding round {r + 1}/{rounds}: ' + ', '.join(
        f'{f} {mode} {1e3 * statistics.median(times[(f, mode)][-2:]):.1f} ms' for f in decoders
        for mode in DECODE_MODES), flush=True)
  return times


def _commit(tree: str) -> str:
  """The commit a checkout is at (its HEAD), or 'unknown commit' outside git."""
  done = subprocess.run(['git', '-C', tree, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                        check=False)
  return done.stdout.strip() or 'unknown commit'


def argparse_hidden():
  import argparse
  return argparse.SUPPRESS


if __name__ == '__main__':
  main()
