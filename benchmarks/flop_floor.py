"""The compute floor of the throughput benchmark's training step on this machine, and what the targets demand.

    python -m benchmarks.flop_floor              # ~1 minute
    python -m benchmarks.flop_floor --quick      # smaller matmuls for the peak (seconds)

1. Matmul FLOPs of one training step (forward + backward) of benchmarks.throughput's model, counted exactly from
   the jaxpr of `training.steps.train_step`: every `dot_general` contributes 2 x (product of its batch, contracting
   and free dimensions), multiplied by the trip count of every enclosing `scan` (XLA's own cost analysis counts a
   loop body once, so it cannot be used here). The same model in PyTorch and Keras performs the same matmuls.
2. The machine's dense fp32 matmul rate: the best of jitted JAX and (if installed) PyTorch on large square
   matmuls with all cores, median of repeats.
3. floor = FLOPs / rate: no implementation of this model, in any framework, trains a step faster on this machine
   in fp32 (the elementwise work, softmaxes and the Adam update come on top). Set against the step times of
   benchmarks/results/throughput.json, it says which throughput targets are reachable at all, and what fraction
   of the floor each framework's step attains (floor / step time).
4. bfloat16: the same matmul in bf16 in JAX under each XLA:CPU flag that could route it to oneDNN / XNNPACK /
   YNNPACK (and so to AMX tiles where the CPU has them), one fresh process per flag set, against PyTorch's bf16
   matmul (oneDNN). It answers whether bf16 could lift the floor for JAX on this CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time

from benchmarks import harness
from benchmarks import throughput

MODULE = 'benchmarks.flop_floor'
PEERS = ('pytorch', 'keras')
SPEEDUP_TARGET = 1.5        # attention_jax tokens/s >= 1.5 x the faster peer's
FLOOR_FRACTION_TARGET = 0.6  # attention_jax's step >= 60% of the matmul floor's speed (floor / step >= 0.6)
# XLA:CPU flag sets tried for bf16 matmuls (each in a fresh process: XLA reads its flags once).
BF16_FLAG_SETS = ('', '--xla_cpu_use_onednn=true', '--xla_cpu_experimental_onednn_custom_call=true',
                  '--xla_cpu_use_xnnpack=true', '--xla_cpu_experimental_xnn_fusion_type=dot',
                  '--xla_cpu_experimental_ynn_fusion_type=dot', '--xla_cpu_experimental_onednn_fusion_type=dot')


def dot_general_flops(eqn) -> int:
  """2 x batch x contracting x free(lhs) x free(rhs) of one dot_general equation."""
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params['dimension_numbers']
  batch = math.prod(lhs[d] for d in lhs_batch)
  contract = math.prod(lhs[d] for d in lhs_contract)
  lhs_free = math.prod(s for d, s in enumerate(lhs) if d not in lhs_contract and d not in lhs_batch)
  rhs_free = math.prod(s for d, s in enumerate(rhs) if d not in rhs_contract and d not in rhs_batch)
  return 2 * batch * contract * lhs_free * rhs_free


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(item, 'jaxpr') and hasattr(item.jaxpr, 'eqns'):     # ClosedJaxpr
        yield item.jaxpr
      elif hasattr(item, 'eqns'):                                    # Jaxpr
        yield item


def matmul_flops(jaxpr) -> int:
  """Matmul FLOPs of a jaxpr, scans multiplied out.

  Raises:
    ValueError: on a while loop (its trip count is not static, so the count would be a guess).
  """
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += dot_general_flops(eqn)
    elif name == 'while':
      raise ValueError('A while loop has no static trip count; its FLOPs cannot be counted.')
    else:
      inner = sum(matmul_flops(sub) for sub in _sub_jaxprs(eqn))
      total += inner * (int(eqn.params['length']) if name == 'scan' else 1)
  return total


def step_flops(spec: dict) -> tuple[int, int]:
  """(training-step matmul FLOPs, forward-only matmul FLOPs) of the throughput benchmark's model."""
  import jax
  import optax
  from attention_jax.models import build_model
  from attention_jax.tasks import translation
  from attention_jax.training import steps

  model = build_model(throughput.model_config(spec), source_vocab_size=spec['vocab_size'],
                      target_vocab_size=spec['vocab_size'], max_source_length=spec['source_length'])
  batch = throughput.make_batches(spec, 1)[0]
  state = steps.create_train_state(model, optax.adam(spec['learning_rate']), 0, batch['source'], batch['target_in'])
  train_step = functools.partial(steps.train_step, loss_fn=functools.partial(translation.sequence_loss, model=model))
  train = jax.make_jaxpr(train_step)(state, batch)
  forward = jax.make_jaxpr(lambda p: model.apply({'params': p}, batch['source'], batch['target_in']))(state.params)
  return matmul_flops(train.jaxpr), matmul_flops(forward.jaxpr)


def jax_matmul_rate(size: int, repeats: int, dtype: str = 'float32') -> float:
  """Median GFLOP/s of a jitted [size, size] x [size, size] matmul in `dtype`."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
  stats = harness.time_call(jax.jit(jnp.matmul), a, b, repeats=repeats)
  return 2 * size ** 3 / (stats['median_ms'] * 1e-3) / 1e9


def torch_matmul_rate(size: int, repeats: int, threads: int, dtype: str = 'float32') -> float | None:
  """Median GFLOP/s of torch.mm in `dtype` with `threads` threads, or None without PyTorch."""
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(threads)
  a, b = torch.randn(size, size).to(getattr(torch, dtype)), torch.randn(size, size).to(getattr(torch, dtype))
  for _ in range(2):
    torch.mm(a, b)
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    torch.mm(a, b)
    runs.append(time.perf_counter() - start)
  return 2 * size ** 3 / statistics.median(runs) / 1e9


def bf16_rates(size: int, repeats: int) -> list[dict]:
  """JAX's bf16 matmul rate under each of BF16_FLAG_SETS (fresh processes) and PyTorch's, GFLOP/s."""
  rows = []
  for flags in BF16_FLAG_SETS:
    env = {**os.environ, 'XLA_FLAGS': f'{os.environ.get("XLA_FLAGS", "")} {flags}'.strip()}
    try:
      done = subprocess.run([sys.executable, '-m', MODULE, '--jax_rate', 'bfloat16', '--size', str(size),
                             '--repeats', str(repeats)], env=env, capture_output=True, text=True, check=False,
                            timeout=600)
    except subprocess.TimeoutExpired:
      rows.append({'framework': 'jax', 'XLA_FLAGS': flags or '(none)', 'bf16_GFLOP_s': None,
                   'error': 'no answer within 600 s'})
      continue
    lines = [line for line in done.stdout.splitlines() if line.startswith('rate ')]
    rate = float(lines[-1].split()[1]) if lines else None
    error = None if lines else (done.stderr.strip().splitlines() or ['no output'])[-1][:160]
    rows.append({'framework': 'jax', 'XLA_FLAGS': flags or '(none)', 'bf16_GFLOP_s': rate, 'error': error})
  torch_rate = torch_matmul_rate(size, repeats, os.cpu_count() or 1, dtype='bfloat16')
  if torch_rate is not None:
    rows.append({'framework': 'pytorch', 'XLA_FLAGS': '-', 'bf16_GFLOP_s': torch_rate, 'error': None})
  return rows


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.split('\n')[0], os.path.join('benchmarks', 'results', 'flop_floor.json'))
  parser.add_argument('--throughput_json', default=os.path.join('benchmarks', 'results', 'throughput.json'),
                      help='step times of the peers (python -m benchmarks.throughput)')
  parser.add_argument('--skip_bf16', action='store_true', help='leave out the bf16 flag survey')
  parser.add_argument('--jax_rate', default=None, help=argparse.SUPPRESS)   # worker: print one JAX matmul rate
  parser.add_argument('--size', type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument('--repeats', type=int, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.jax_rate:
    print(f'rate {jax_matmul_rate(args.size, args.repeats, args.jax_rate)}')
    return {}
  size, repeats = (512, 3) if args.quick else (2048, 7)
  spec = throughput.SPEC
  train_flops, forward_flops = step_flops(spec)
  rates = {'jax': jax_matmul_rate(size, repeats)}
  torch_rate = torch_matmul_rate(size, repeats, os.cpu_count() or 1)
  if torch_rate is not None:
    rates['pytorch'] = torch_rate
  peak = max(rates.values())
  floor_ms = train_flops / (peak * 1e9) * 1e3
  tokens = spec['batch_size'] * spec['target_length']
  summary = {'forward_GFLOP': forward_flops / 1e9, 'train_step_GFLOP': train_flops / 1e9,
             'train_over_forward': train_flops / forward_flops,
             **{f'{k}_matmul_GFLOP_s': v for k, v in rates.items()},
             'floor_ms': floor_ms, 'tokens_per_s_ceiling': tokens / (floor_ms * 1e-3)}
  print(f'Command: {harness.rerun_command(MODULE)}\n')
  print(harness.markdown_table([summary], list(summary)))
  rows = []
  if os.path.exists(args.throughput_json):
    with open(args.throughput_json) as f:
      measured = {row['framework']: row for row in json.load(f)['rows']}
    for framework, row in measured.items():
      rows.append({'framework': framework, 'median_step_ms': row['median_step_ms'],
                   'best_round_ms': min(row['round_medians_ms']), 'floor_ms': floor_ms,
                   'floor_fraction': floor_ms / row['median_step_ms']})
    peers = [measured[p]['median_step_ms'] for p in PEERS if p in measured]
    if peers and 'attention_jax' in measured:
      needed = min(peers) / SPEEDUP_TARGET
      ours = measured['attention_jax']['median_step_ms']
      summary.update({'step_needed_for_target_ms': needed, 'needed_over_floor': needed / floor_ms,
                      'speedup_over_faster_peer': min(peers) / ours,
                      'attention_jax_floor_fraction': floor_ms / ours})
    print(f'\nAgainst the step times in {args.throughput_json} (floor_fraction = floor / step; the targets: '
          f'attention_jax >= {SPEEDUP_TARGET}x the faster peer, floor_fraction >= {FLOOR_FRACTION_TARGET}):\n')
    print(harness.markdown_table(rows, ['framework', 'median_step_ms', 'best_round_ms', 'floor_ms',
                                        'floor_fraction']))
    if 'step_needed_for_target_ms' in summary:
      print(f'\n{SPEEDUP_TARGET}x the faster peer needs a {summary["step_needed_for_target_ms"]:.1f} ms step '
            f'({summary["needed_over_floor"]:.2f}x the floor); attention_jax is '
            f'{summary["speedup_over_faster_peer"]:.2f}x the faster peer at '
            f'{summary["attention_jax_floor_fraction"]:.2f} of the floor.')
  bf16 = [] if args.skip_bf16 else bf16_rates(size, repeats)
  if bf16:
    print(f'\nbfloat16 [{size}, {size}] x [{size}, {size}] matmul (fp32 above: {rates}):\n')
    print(harness.markdown_table(bf16, ['framework', 'XLA_FLAGS', 'bf16_GFLOP_s', 'error']))
  result = {'command': harness.rerun_command(MODULE), 'spec': spec, 'matmul_size': size, **summary,
            'steps': rows, 'bf16': bf16, 'machine': harness.machine_info(['torch'])}
  harness.write_json(args.out, result)
  return result


if __name__ == '__main__':
  main()
