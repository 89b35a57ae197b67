"""Where the training step's time goes: the throughput model's step traced with `jax.profiler`, each XLA:CPU thunk
attributed to a part of the model by the op_name JAX writes into its HLO instruction.

    python -m benchmarks.step_profile              # ~1 minute: 5 traced steps after warm-up
    python -m benchmarks.step_profile --top 12     # also each part's 12 costliest thunks
    python -m benchmarks.step_profile --quick      # a tiny model (smoke test)
    python -m benchmarks.step_profile --program beam --out benchmarks/results/decode_profile_beam.json
                                                   # where greedy (--program greedy) or beam-4 decoding's time goes

The step is `training.steps.train_step` of `benchmarks.throughput`'s model (GRU encoder, Bahdanau decoder,
additive attention, V = 4000, batch 64 of 20 -> 20 tokens, Adam), jitted, in a process set up as experiments/ sets
it up (`cpu_runtime.configure()`, `cpu_runtime.place_worker_threads()`). Parts, from the op_name of each thunk's
instruction (an instruction without one, e.g. a copy XLA added inside a loop, takes its loop's):

  encoder                  Seq2Seq.encode (the hoisted input projection and the recurrence)
  decoder scan             cell.teacher_forced/while: the per-step attention and GRU
  output layer             cell.readout_logits: readout tanh(W[s; c; y]) and the vocabulary projection
  rest of the model        the other work under Seq2Seq (embeddings, key projection, the decoder's hoisted input
                           projection, layout changes)
  loss and metrics         outside the model, under the gradient (cross-entropy, argmax correctness)
  optimizer and guard      the rest: Adam, the gradient norm and the non-finite guard

each split into forward and backward (the backward's op_names are under `transpose(...)`). Reported per part, as
means over the traced steps: `summed_ms`, the summed time of its thunks (thunks that ran side by side on the cores
add up, so the parts' sum exceeds the step), and `busy_ms`, the wall time during which at least one of them ran
(the union of their intervals). `busy_ms` of the sequential parts (the scans) is their share of the step's wall
time; `summed_ms / busy_ms` above 1 means the part kept more than one core busy. The step's wall time is that of
the traced call, which the profiler slows a little. Two limits: a dot that XLA:CPU hands to its Eigen pool
(`dot.N` thunks, e.g. the output layer's weight gradient) is counted by its thunk, which returns before the pool
has finished, so its work shows up as the slowness of the thunks that run beside it; and the trace records each
thunk, not what the cores did between thunks (the loops' bookkeeping, spinning pool threads).

`--program greedy | beam` traces a call of `decoding.greedy_decode` / `decoding.beam_search_n_best` with n = K = 4
(the program `decoding.beam_search` runs; length penalty 0.6, as `benchmarks.throughput` decodes) of the same model
on one batch instead, with these parts (no directions):

  encoder                  Seq2Seq.encode and initial_state, once per batch
  attention                cell._attend in each decoding step: the query's scores, the weights and the context
  recurrence               the rest of cell.recurrent_step: the GRU's gates and update
  output layer             cell.readout_logits and the log-softmax over the vocabulary (into which XLA fuses the
                           vocabulary projection)
  search                   the rest: argmax or top-k, the beams' bookkeeping and reordering
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile

from benchmarks import harness
from benchmarks import throughput

MODULE = 'benchmarks.step_profile'
STEP_ANNOTATION = 'step_profile.step'
# (part, the op_name fragment that marks it), first match wins; forward/backward is decided apart.
PART_MARKERS = (('encoder', 'Seq2Seq.encode'), ('decoder scan', 'cell.teacher_forced/while'),
                ('output layer', 'cell.readout_logits'), ('rest of the model', 'Seq2Seq'))
PARTS = ('encoder', 'decoder scan', 'output layer', 'rest of the model', 'loss and metrics', 'optimizer and guard')
PROGRAMS = ('step', 'greedy', 'beam')
DECODING_PART_MARKERS = (('encoder', 'Seq2Seq.encode'), ('encoder', 'Seq2Seq.initial_state'),
                         ('attention', 'cell._attend'), ('recurrence', 'cell.recurrent_step'),
                         ('output layer', 'cell.readout_logits'), ('output layer', 'log_softmax'))
DECODING_PARTS = ('encoder', 'attention', 'recurrence', 'output layer', 'search')
# Instructions whose thunk only runs others (their time would be counted twice).
CONTAINER_OPCODES = ('while', 'call', 'conditional')

_COMPUTATION = re.compile(r'^(?:ENTRY )?%([\w.\-]+) \(', re.M)
_NAME = re.compile(r'^\s+(?:ROOT )?%([\w.\-]+) = ')
_OPCODE = re.compile(r'\s*([\w\-]+)\(')
_OPERAND = re.compile(r'%([\w.\-]+)')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLED = re.compile(r'(?:body|condition|to_apply|calls|branch_computations)=\{?%([\w.\-]+)')


def _split_instruction(line: str) -> tuple[str, str, str, str] | None:
  """'  %name = shape opcode(operands), attributes' -> (name, shape, opcode, the rest from the operands on)."""
  match = _NAME.match(line)
  if not match:
    return None
  rest = line[match.end():]
  if rest.startswith('('):                   # a tuple shape: up to its closing parenthesis
    depth = 0
    for end, char in enumerate(rest):
      depth += {'(': 1, ')': -1}.get(char, 0)
      if depth == 0:
        break
    shape, rest = rest[:end + 1], rest[end + 1:]
  else:
    shape, _, rest = rest.partition(' ')
  opcode = _OPCODE.match(rest)
  if not opcode:
    return None
  return match.group(1), shape, opcode.group(1), rest[opcode.end():]


def _marked_part(op_name: str, markers) -> str | None:
  """The part of the first (part, marker) in `markers` whose marker is in op_name, else None."""
  return next((part for part, marker in markers if marker in op_name), None)


def classify(op_name: str) -> tuple[str, str]:
  """An instruction's op_name -> (part, 'forward' | 'backward'; '-' for the optimizer's update)."""
  direction = 'backward' if 'transpose(' in op_name else 'forward'
  part = _marked_part(op_name, PART_MARKERS)
  if part is not None:
    return part, direction
  if 'jvp(' in op_name or 'transpose(' in op_name:      # under the gradient, outside the model: the loss
    return 'loss and metrics', direction
  return 'optimizer and guard', '-'


def classify_decoding(op_name: str) -> tuple[str, str]:
  """An instruction's op_name in a decoding program -> (part, '-')."""
  return _marked_part(op_name, DECODING_PART_MARKERS) or 'search', '-'


def instruction_table(hlo_text: str) -> dict[str, dict]:
  """Compiled HLO text -> {instruction name: {'opcode', 'shape', 'op_name'}}. An instruction without an op_name
  (XLA made it: a copy, a loop's batched dot) takes that of its first operand that has one, else of its first
  user that has one (a buffer made for a loop takes the loop's), else that of the instruction that calls its
  computation (a loop's body takes the loop's)."""
  instructions, operands, users, computation_of, caller_of = {}, {}, collections.defaultdict(list), {}, {}
  starts = [(m.start(), m.group(1)) for m in _COMPUTATION.finditer(hlo_text)]
  for index, (start, computation) in enumerate(starts):
    end = starts[index + 1][0] if index + 1 < len(starts) else len(hlo_text)
    for line in hlo_text[start:end].splitlines()[1:]:
      parts = _split_instruction(line)
      if parts is None:
        continue
      name, shape, opcode, rest = parts
      op_name = _OP_NAME.search(rest)
      instructions[name] = {'opcode': opcode, 'shape': shape, 'op_name': op_name.group(1) if op_name else ''}
      operands[name] = _OPERAND.findall(rest.split(')', 1)[0])
      for operand in operands[name]:
        users[operand].append(name)
      computation_of[name] = computation
      for called in _CALLED.findall(rest):
        caller_of.setdefault(called, name)

  resolved = {}

  def inherited(name: str, depth: int = 0, towards: str = 'both') -> str:
    if name in resolved:
      return resolved[name]
    op_name = instructions[name]['op_name']
    for direction, neighbours in (('operands', operands[name]), ('users', users[name])):
      if op_name or depth >= 20 or towards not in ('both', direction):
        continue
      for neighbour in neighbours:
        if neighbour in instructions and (op_name := inherited(neighbour, depth + 1, direction)):
          break
    if not op_name and depth < 20:
      caller = caller_of.get(computation_of[name])
      op_name = inherited(caller, depth + 1) if caller in instructions else ''
    if depth == 0:
      resolved[name] = op_name
    return op_name

  for name in instructions:
    instructions[name]['op_name'] = inherited(name)
  return instructions


def _union_us(intervals: list[tuple[float, float]]) -> float:
  total, end = 0.0, float('-inf')
  for start, stop in sorted(intervals):
    if stop > end:
      total += stop - max(start, end)
      end = stop
  return total


def attribute(trace_events: list[dict], instructions: dict[str, dict], classify=classify, parts=PARTS) -> dict:
  """Trace events of the annotated steps -> per part (and direction): summed and busy ms per step, the step's wall
  time and each instruction's time per step. classify: op_name -> (part, direction), parts in `parts`."""
  complete = [e for e in trace_events if e.get('ph') == 'X']
  steps = sorted((e['ts'], e['ts'] + e['dur']) for e in complete if e['name'] == STEP_ANNOTATION)
  if not steps:
    raise RuntimeError(f'the trace holds no {STEP_ANNOTATION!r} annotation')
  summed, busy = collections.defaultdict(float), collections.defaultdict(list)
  per_instruction = collections.defaultdict(float)
  calls = collections.Counter()
  all_intervals = []
  for event in complete:
    info = instructions.get(event['name'])
    if info is None or info['opcode'] in CONTAINER_OPCODES:
      continue
    if not any(start <= event['ts'] <= stop for start, stop in steps):
      continue
    key = classify(info['op_name'])
    interval = (event['ts'], event['ts'] + event['dur'])
    summed[key] += event['dur']
    busy[key].append(interval)
    all_intervals.append(interval)
    per_instruction[event['name']] += event['dur']
    calls[event['name']] += 1
  n = len(steps)
  rows = []
  for part in parts:
    for direction in ('forward', 'backward', '-'):
      key = (part, direction)
      if key in summed:
        rows.append({'part': part, 'direction': direction, 'summed_ms': summed[key] / n / 1e3,
                     'busy_ms': _union_us(busy[key]) / n / 1e3})
  return {'rows': rows, 'steps': n, 'step_ms': statistics.median((b - a) / 1e3 for a, b in steps),
          'any_thunk_busy_ms': _union_us(all_intervals) / n / 1e3,
          'instructions': {name: {'ms_per_step': t / n / 1e3, 'calls_per_step': calls[name] / n,
                                  'part': ' '.join(classify(instructions[name]['op_name'])), **instructions[name]}
                           for name, t in per_instruction.items()}}


def _decoding_call(trainer, program: str, batch: dict):
  """(the compiled decoding program's executable, a function running it on `batch` to host tokens). Compiled ahead
  of time, with the arguments `benchmarks.throughput` decodes with, so that its HLO names the traced thunks."""
  import numpy as np

  from attention_jax import decoding
  model, params, source = trainer.model, trainer.state.params, batch['source']
  length = batch['target_in'].shape[1]
  if program == 'greedy':
    compiled = decoding.greedy_decode.lower(model, params, source, max_length=length).compile()
    return compiled, lambda: np.asarray(compiled(params, source)[0])
  beam = throughput.BEAM_SIZE
  compiled = decoding.beam_search_n_best.lower(model, params, source, max_length=length, beam_size=beam, n=beam,
                                               length_penalty=0.6).compile()
  return compiled, lambda: np.asarray(compiled(params, source, length_penalty=0.6)[0])


def profile(spec: dict, steps: int, warmup: int = 5, program: str = 'step') -> dict:
  """Traces `steps` calls of `program` on `spec`'s model after `warmup` and attributes their thunks: 'step', the
  training step of `benchmarks.throughput` (its JaxTrainer), compiled once here so that its HLO names the traced
  thunks; 'greedy' / 'beam', a decoding call of the same model on one batch."""
  import jax

  if program not in PROGRAMS:
    raise ValueError(f'unknown program {program!r}; known: {", ".join(PROGRAMS)}')
  trainer = throughput.JaxTrainer(spec, threads=0)
  batch = throughput.make_batches(spec, 1)[0]
  if program == 'step':
    executable = trainer.compile(batch)
    run = lambda: trainer.step(batch)                  # returns the loss as a float: synchronises
    parts = classify, PARTS
  else:
    executable, run = _decoding_call(trainer, program, batch)
    parts = classify_decoding, DECODING_PARTS
  instructions = instruction_table(executable.as_text())
  for _ in range(warmup):
    run()
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        with jax.profiler.TraceAnnotation(STEP_ANNOTATION):
          run()
    [path] = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)['traceEvents']
  return attribute(events, instructions, *parts)


def top_instructions(result: dict, count: int) -> list[dict]:
  """Each part's `count` costliest instructions, costliest part first."""
  by_part = collections.defaultdict(list)
  for name, info in result['instructions'].items():
    by_part[info['part']].append({'instruction': name, **info})
  rows = []
  for part in sorted(by_part, key=lambda p: -sum(i['ms_per_step'] for i in by_part[p])):
    for info in sorted(by_part[part], key=lambda i: -i['ms_per_step'])[:count]:
      rows.append({**info, 'us_per_call': 1e3 * info['ms_per_step'] / info['calls_per_step'],
                   'op_name': info['op_name'].split('/', 1)[-1][-70:]})
  return rows


def main(argv=None) -> dict:
  from attention_jax import cpu_runtime
  cpu_runtime.configure()
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/step_profile.json')
  parser.add_argument('--steps', type=int, default=5, help='traced steps (after 5 of warm-up)')
  parser.add_argument('--top', type=int, default=0, help="also list each part's N costliest thunks")
  parser.add_argument('--program', choices=PROGRAMS, default='step',
                      help='what to trace: the training step (default), or greedy / beam-4 decoding of one batch')
  args = parser.parse_args(argv)
  if args.steps < 1:
    raise SystemExit(f'--steps must be at least 1, got {args.steps}')
  spec = throughput.QUICK_SPEC if args.quick else throughput.SPEC
  load_before = harness.load_average()
  cpu_runtime.place_worker_threads()
  result = profile(spec, args.steps, program=args.program)
  total = sum(row['summed_ms'] for row in result['rows'])
  for row in result['rows']:
    row['share_of_summed'] = row['summed_ms'] / total
  what = 'the step' if args.program == 'step' else f'a {args.program} decoding call'
  print(f"\n{what}: {result['step_ms']:.1f} ms (median of {result['steps']} traced), some thunk running during "
        f"{result['any_thunk_busy_ms']:.1f} ms of it; thunks' summed time {total:.1f} ms\n")
  print(harness.markdown_table(result['rows'], ['part', 'direction', 'summed_ms', 'share_of_summed', 'busy_ms']))
  top = top_instructions(result, args.top) if args.top else []
  if top:
    print(f"\neach part's {args.top} costliest thunks\n")
    print(harness.markdown_table(top, ['part', 'instruction', 'ms_per_step', 'calls_per_step', 'us_per_call',
                                       'shape', 'op_name']))
  return harness.write_results(MODULE, args.out, load_before, {
      'spec': spec, 'program': args.program, **{k: v for k, v in result.items() if k != 'instructions'},
      'top': top})


if __name__ == '__main__':
  main()
