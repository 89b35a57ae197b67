"""Restructurings of the training step, each timed against the step as the library builds it, in one process.

    python -m benchmarks.step_variants                    # ~8 min: every variant below, 8 interleaved rounds
    python -m benchmarks.step_variants --variants chunks_2 no_value_grads_in_scan
    python -m benchmarks.step_variants --quick            # a tiny model (smoke test)

The step is `benchmarks.throughput`'s (GRU encoder, Bahdanau decoder with additive attention, V = 4000, batch 64 of
20 -> 20 tokens, Adam; its JaxTrainer) in a process set up as experiments/ sets one up. A variant replaces one
method of the library while its trainer is built and compiled ahead of time (so that the compiled step keeps it
and the library is restored at once); the unmodified step is compiled beside it, and the two are timed in
alternating groups of 5 steps after 0.3 s of idleness each (the order reversed every round).

Three kinds of variant:
- `same`: the same function written differently. The first step's loss must be equal and the gradient of the loss
  equal to float32 rounding (`max_grad_diff`: the largest difference over all parameters, relative to that
  parameter's largest gradient); the row says whether it was.
- `upper bound`: part of the gradient is cut with stop_gradient inside the decoder's scan (wrong training): the time
  it saves bounds what a custom VJP that computed that part outside the loop could gain at most.
- `no guard`: the same gradient, but the update skips the non-finite guard (`training.steps.
  apply_gradients_if_finite`: plain Adam, whose state a non-finite step would corrupt): what the guard costs.

Variants:
  late_weight_gradient    the output layer's kernel gradient made to wait for its input gradient (a custom VJP
                          whose kernel gradient reads x + 0 * dx[0, 0]), so that the decoder's backward scan could
                          run beside it instead of after both
  chunks_2, chunks_4      the decoder's teacher-forced scan in 2 (4) chunks of time steps, each chunk's readout and
                          vocabulary projection right after it, so that XLA:CPU could run one chunk's output layer
                          beside the next chunk's scan
  remat_dots              the scan's step under nn.checkpoint(policy=dots_with_no_batch_dims_saveable): matmul
                          outputs kept for the backward pass, the elementwise work recomputed, fewer stacked
                          residuals
  no_kernel_grads_in_scan upper bound: the GRU's hidden and context kernels get no gradient from inside the scan
  no_key_grads_in_scan    upper bound: the prepared keys get none (the per-step [B, S, H] accumulation goes)
  no_value_grads_in_scan  upper bound: the values (encoder outputs) get none from the scan (nor from the readout's
                          context)
  no_memory_grads_in_scan upper bound: neither keys nor values
  projected_values        the GRU's context kernel applied to the values once before the scan ([B, S, D] x [D, G]),
                          each step's context gates the attention-weighted sum of those rows instead of a
                          [B, D] x [D, G] matmul, the readout's contexts one batched product after the scan
  loss_in_halves          the cross-entropy and the accuracy computed on each half of the batch apart, so that
                          XLA:CPU could run the two halves' passes over the logits side by side
  no_guard                no guard: Adam applied without the global-norm check and the select of the old state
  no_guard_hand_written   no guard, with hand_written_decoder_backward
  hand_written_decoder_backward
                          the decoder's scan as `benchmarks.bahdanau_backward.teacher_forced_scan`: a custom VJP
                          whose backward loop carries only the state's, the keys' and v's cotangents, with the
                          weight and value gradients as batched matmuls after the loop and 8 stacked residuals
                          instead of 14

Each variant is timed twice against the base: the training step (`base_ms`, `variant_ms`), and the gradient of the
loss alone, one jitted function without the optimizer (`grad_base_ms`, `grad_variant_ms`): a restructuring of the
backward pass can shorten the second and not the first, where XLA:CPU orders the work after a loop differently.

Read a ratio as real only beyond the spread between rounds (`round_ratios`, `grad_round_ratios`): this machine
drifts by several percent within minutes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
import statistics
import time
from typing import Any, NamedTuple

import numpy as np

from benchmarks import harness

MODULE = 'benchmarks.step_variants'
GROUP = 5
PAUSE_S = 0.3
COLUMNS = ('variant', 'kind', 'base_ms', 'variant_ms', 'speedup', 'round_ratios', 'grad_base_ms', 'grad_variant_ms',
           'grad_speedup', 'grad_round_ratios', 'first_loss_equal', 'max_grad_diff')


class Variant(NamedTuple):
  """kind ('same' | 'upper bound' | 'no guard'), what it changes, and patches(): the (owner, attribute name,
  replacement) triples that `variant` sets while the variant's step is compiled."""
  kind: str
  changes: str
  patches: Callable[[], list[tuple[Any, str, Any]]]


def _decoder_scan(teacher_forced_factory):
  """patches() for a variant that replaces BahdanauCell.teacher_forced by teacher_forced_factory()."""
  return lambda: [(_decoders().BahdanauCell, 'teacher_forced', teacher_forced_factory())]


VARIANTS = {
    'late_weight_gradient': Variant('same', 'output layer: kernel gradient after the input gradient',
                                    lambda: [_late_weight_gradient_patch()]),
    'chunks_2': Variant('same', 'decoder scan and output layer in 2 chunks of time steps',
                        _decoder_scan(lambda: _teacher_forced(chunks=2))),
    'chunks_4': Variant('same', 'decoder scan and output layer in 4 chunks of time steps',
                        _decoder_scan(lambda: _teacher_forced(chunks=4))),
    'remat_dots': Variant('same', 'scan step rematerialised, matmul outputs saved',
                          _decoder_scan(lambda: _teacher_forced(remat='dots_with_no_batch_dims_saveable'))),
    'no_kernel_grads_in_scan': Variant('upper bound', "GRU kernels' gradients from inside the scan cut",
                                       _decoder_scan(lambda: _teacher_forced(cut=('kernels',)))),
    'no_key_grads_in_scan': Variant('upper bound', "prepared keys' gradients from the scan cut",
                                    _decoder_scan(lambda: _teacher_forced(cut=('keys',)))),
    'no_value_grads_in_scan': Variant('upper bound', "values' gradients from the scan cut",
                                      _decoder_scan(lambda: _teacher_forced(cut=('values',)))),
    'no_memory_grads_in_scan': Variant('upper bound', "keys' and values' gradients from the scan cut",
                                       _decoder_scan(lambda: _teacher_forced(cut=('keys', 'values')))),
    'hand_written_decoder_backward': Variant('same', 'decoder scan with a hand-written backward pass',
                                             _decoder_scan(lambda: _hand_written_teacher_forced())),
    'projected_values': Variant('same', "context kernel applied to the values once before the scan",
                                _decoder_scan(lambda: _projected_values_teacher_forced())),
    'loss_in_halves': Variant('same', 'loss and accuracy on each half of the batch apart',
                              lambda: _loss_in_halves_patches()),
    'no_guard': Variant('no guard', 'Adam without the non-finite guard', lambda: [_no_guard_patch()]),
    'no_guard_hand_written': Variant('no guard', 'no guard, and the hand-written decoder backward pass',
                                     lambda: [*VARIANTS['hand_written_decoder_backward'].patches(),
                                              _no_guard_patch()]),
}


def _late_weight_gradient_dot():
  """lax.dot_general for nn.Dense, with a VJP whose kernel gradient waits for the input gradient."""
  import jax

  @jax.custom_vjp
  def matmul(x, kernel):
    return x @ kernel

  def forward(x, kernel):
    return x @ kernel, (x, kernel)

  def backward(residuals, d_out):
    x, kernel = residuals
    d_x = d_out @ kernel.T
    waiting = x + 0.0 * d_x[0, 0]             # a data dependency: XLA:CPU's executor follows only those
    return d_x, waiting.T @ d_out

  matmul.defvjp(forward, backward)

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type
    (lhs_contracting, rhs_contracting), (lhs_batch, _) = dimension_numbers
    if lhs.ndim != 2 or tuple(lhs_contracting) != (1,) or tuple(rhs_contracting) != (0,) or lhs_batch:
      raise ValueError(f'late_weight_gradient handles [N, d] x [d, V] only, got {dimension_numbers}')
    return matmul(lhs, rhs)

  return dot_general


def _check_plain_bahdanau(cell, variant_name: str) -> None:
  """Raises ValueError unless `cell` is the configuration the variants rewrite: global attention with a softmax,
  no copy attention, float32 (the library's teacher_forced for it is one scan of `_attend` and the GRU/LSTM step)."""
  import jax.numpy as jnp
  if (cell.locality != 'global' or cell.weighting != 'softmax' or cell.copy_attention or cell.scorer_state
      or cell.dtype != jnp.float32):
    raise ValueError(f'{variant_name} rewrites the Bahdanau decoder with global softmax attention, no copy '
                     f'attention, no scorer state and float32 only')


def _decoder_inputs(cell, embedded_BTE, memory):
  """What the library's BahdanauCell.teacher_forced computes before its scan: (the cell's fused kernels, W_i's
  rows for the context [D, G], y_{t-1}'s input gates with the bias for all steps [T, B, G])."""
  from attention_jax.models import decoders, recurrence
  embed_dim = embedded_BTE.shape[-1]
  kernels = cell.rnn.kernels(embed_dim + memory.values.shape[-1])
  embedded_kernels, context_kernel = decoders._split_input_kernels(kernels, embed_dim)
  return kernels, context_kernel, recurrence.input_gates(embedded_BTE, embedded_kernels)


def _teacher_forced(chunks: int = 1, remat: str | None = None, cut: tuple[str, ...] = ()):
  """A BahdanauCell.teacher_forced with the same steps as the library's, in `chunks` scans, the step under
  nn.checkpoint(policy=jax.checkpoint_policies.<remat>) if given, and stop_gradient on the named inputs of the scan
  ('kernels', 'keys', 'values')."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from attention_jax.models import decoders
  remat_policy = getattr(jax.checkpoint_policies, remat) if remat else None

  def teacher_forced(self, carry, embedded_BTE, memory, *, train=False):
    _check_plain_bahdanau(self, 'this variant')
    cut_tree = lambda tree: jax.tree.map(jax.lax.stop_gradient, tree)
    kernels, context_kernel, embedded_gates_TBG = _decoder_inputs(self, embedded_BTE, memory)
    if 'kernels' in cut:
      kernels, context_kernel = cut_tree(kernels), cut_tree(context_kernel)
    if 'keys' in cut:
      memory = memory.replace(prepared=cut_tree(memory.prepared))
    if 'values' in cut:
      memory = memory.replace(values=cut_tree(memory.values))

    def step(cell, carry, embedded_gates):
      context, weights, carry = cell._attend(decoders.cell_output(carry['rnn']), carry, memory, train=train)
      gates = embedded_gates + jnp.dot(context.astype(context_kernel.dtype), context_kernel)
      rnn_carry, state = cell.rnn.step_from_gates(carry['rnn'], gates, kernels)
      return {**carry, 'rnn': rnn_carry}, (state, context, weights)

    if remat_policy is not None:
      step = nn.checkpoint(step, policy=remat_policy, prevent_cse=False)
    length = embedded_BTE.shape[1]
    bounds = [round(i * length / chunks) for i in range(chunks + 1)]
    logits, weights = [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
      carry, (states, contexts, chunk_weights) = decoders._scan_steps(step, self, carry,
                                                                      embedded_gates_TBG[start:stop], in_axes=0)
      logits.append(self.readout_logits(states, contexts, embedded_BTE[:, start:stop], train))
      weights.append(chunk_weights)
    return jnp.concatenate(logits, 1), jnp.concatenate(weights, 1)

  return teacher_forced


def _projected_values_teacher_forced():
  """A BahdanauCell.teacher_forced that applies the GRU's context kernel to the values once, [B, S, D] x [D, G],
  before the scan, so that a step takes its context gates as the weighted sum of those rows
  (sum_j a_tj (W_c h_j) = W_c sum_j a_tj h_j) instead of a [B, D] x [D, G] matmul; the contexts for the readout are
  one batched product of the weights with the values after the scan."""
  import jax
  import jax.numpy as jnp

  from attention_jax import attention as attention_lib
  from attention_jax import weighting as weighting_lib
  from attention_jax.models import decoders

  def teacher_forced(self, carry, embedded_BTE, memory, *, train=False):
    _check_plain_bahdanau(self, 'projected_values')
    kernels, context_kernel, embedded_gates_TBG = _decoder_inputs(self, embedded_BTE, memory)
    projected_BSG = jnp.dot(memory.values, context_kernel)
    weigh = jax.vmap(weighting_lib.get(self.attention.weighting))

    def step(cell, carry, embedded_gates):
      scores = cell.attention.score_prepared(decoders.cell_output(carry['rnn']), memory.prepared)
      weights = weigh(scores, memory.mask)
      gates = embedded_gates + attention_lib.context(weights, projected_BSG)
      rnn_carry, state = cell.rnn.step_from_gates(carry['rnn'], gates, kernels)
      return {**carry, 'rnn': rnn_carry}, (state, weights)

    _, (states_BTH, weights_BTS) = decoders._scan_steps(step, self, carry, embedded_gates_TBG, in_axes=0)
    context_BTD = attention_lib.context(weights_BTS, memory.values[:, None])
    return self.readout_logits(states_BTH, context_BTD, embedded_BTE, train), weights_BTS

  return teacher_forced


def _hand_written_teacher_forced():
  """A BahdanauCell.teacher_forced whose scan is `bahdanau_backward.teacher_forced_scan` (GRU, plain additive
  attention with a softmax, float32)."""
  import jax.numpy as jnp

  from benchmarks import bahdanau_backward

  def teacher_forced(self, carry, embedded_BTE, memory, *, train=False):
    _check_plain_bahdanau(self, 'hand_written_decoder_backward')
    if self.cell_type != 'gru' or self.scorer != 'additive':
      raise ValueError('hand_written_decoder_backward runs a GRU with additive attention only')
    kernels, context_kernel, embedded_gates_TBG = _decoder_inputs(self, embedded_BTE, memory)
    scorer = self.attention.scorer_params(self.hidden_dim, memory.prepared.key_dim)
    if 'g' in scorer:
      raise ValueError('hand_written_decoder_backward takes the additive scorer without normalize')
    params = bahdanau_backward.StepParams(hidden_kernel=kernels.hidden_kernel, hidden_bias=kernels.hidden_bias,
                                          context_kernel=context_kernel, query_kernel=scorer['W_q'], v=scorer['v'])
    states, contexts, weights = bahdanau_backward.teacher_forced_scan(
        params, embedded_gates_TBG, carry['rnn'], memory.prepared.cache, memory.values, memory.mask)
    states_BTH, context_BTD, weights_BTS = (jnp.swapaxes(x, 0, 1) for x in (states, contexts, weights))
    return self.readout_logits(states_BTH, context_BTD, embedded_BTE, train), weights_BTS

  return teacher_forced


@contextlib.contextmanager
def variant(name: str):
  """Sets what variant `name` replaces in the library (`VARIANTS[name].patches()`), and restores it on exit,
  also when the body raises."""
  if name not in VARIANTS:
    raise ValueError(f'unknown variant {name!r}; known: {", ".join(VARIANTS)}')
  with contextlib.ExitStack() as stack:
    for owner, attribute, replacement in VARIANTS[name].patches():
      stack.enter_context(_replaced(owner, attribute, replacement))
    yield


def _decoders():
  from attention_jax.models import decoders
  return decoders


def _late_weight_gradient_patch():
  """_CellBase._setup_common run with an nn.Dense whose `output` layer uses `_late_weight_gradient_dot`."""
  import flax.linen as nn

  decoders = _decoders()
  setup_common = decoders._CellBase.__dict__['_setup_common']
  dense, dot_general = nn.Dense, _late_weight_gradient_dot()

  def output_with_late_gradient(*args, name=None, **kwargs):
    if name == 'output':
      kwargs['dot_general'] = dot_general
    return dense(*args, name=name, **kwargs)

  def replacement(self):
    with _replaced(nn, 'Dense', output_with_late_gradient):
      setup_common(self)

  return decoders._CellBase, '_setup_common', replacement


def _loss_in_halves_patches():
  from attention_jax.tasks import translation
  from attention_jax.training import sequence_losses
  return [(translation, 'token_losses', _in_halves(translation.token_losses)),
          (sequence_losses, 'token_correct', _in_halves(sequence_losses.token_correct))]


def _no_guard_patch():
  """training.steps.apply_gradients_if_finite as plain Adam: no global-norm check, no select of the old state."""
  import jax.numpy as jnp
  import optax

  from attention_jax.training import steps

  def replacement(state, grads, loss):
    del loss
    return state.apply_gradients(grads=grads), optax.tree.norm(grads), jnp.int32(steps.NO_NONFINITE_STEP)

  return steps, 'apply_gradients_if_finite', replacement


@contextlib.contextmanager
def _replaced(owner, name: str, replacement):
  """Sets owner.name (a class's method or a module's function) to `replacement`, and restores it on exit."""
  original = owner.__dict__[name]
  setattr(owner, name, replacement)
  try:
    yield
  finally:
    setattr(owner, name, original)


def _in_halves(per_token):
  """per_token(logits [B, T, V], targets [B, T], *rest) -> [B, T], computed on each half of the batch apart."""
  import jax.numpy as jnp

  def halves(logits, targets, *rest):
    half = logits.shape[0] // 2
    if half == 0 or logits.shape[0] % 2:
      return per_token(logits, targets, *rest)
    return jnp.concatenate([per_token(logits[:half], targets[:half], *rest),
                            per_token(logits[half:], targets[half:], *rest)], axis=0)

  return halves


def _gradient(trainer, batch) -> tuple[list[np.ndarray], Callable[[dict], float]]:
  """(the gradient of the trainer's summed loss at its initial parameters, a function that times that gradient on a
  batch in seconds), compiled while a variant is active."""
  import jax

  from benchmarks import throughput
  loss_fn = throughput._sequence_loss(trainer.model)
  params = jax.tree.map(lambda x: x.copy(), trainer.state.params)   # the trainer's own are donated by its steps
  grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, b, jax.random.PRNGKey(0), train=True)[0]))
  grad = grad.lower(params, batch).compile()

  def timed(step_batch: dict) -> float:
    start = time.perf_counter()
    jax.block_until_ready(grad(params, step_batch))
    return time.perf_counter() - start

  return [np.asarray(g) for g in jax.tree.leaves(grad(params, batch))], timed


def _max_relative_difference(grads: list[np.ndarray], reference: list[np.ndarray]) -> float:
  """max over parameters of max |grad - reference| / max |reference| (leaves in the same order)."""
  return max(float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30)) for g, r in zip(grads, reference))


def compare(names: list[str], spec: dict, rounds: int) -> list[dict]:
  """Times each named variant against the library's step and loss gradient, interleaved in this process.

  Args:
    names: keys of VARIANTS.
    spec: the model and batch sizes (`benchmarks.throughput.SPEC` or its QUICK_SPEC).
    rounds: rounds of GROUP steps per variant and per function, the order reversed every round.

  Returns:
    one row per variant: medians in ms (`base_ms`, `variant_ms`, `grad_base_ms`, `grad_variant_ms`), speedups,
    each round's ratio for the step and the gradient, whether the first loss was equal and the largest relative
    gradient difference.
  """
  from benchmarks import throughput

  batches = throughput.make_batches(spec, GROUP)
  base = throughput.JaxTrainer(spec, threads=0)
  base.compile(batches[0])
  reference, base_grad = _gradient(base, batches[0])
  base_loss = base.step(batches[0])
  rows = []
  for name in names:
    with variant(name):
      trainer = throughput.JaxTrainer(spec, threads=0)
      trainer.compile(batches[0])
      grads, variant_grad = _gradient(trainer, batches[0])
    loss = trainer.step(batches[0])
    runners = {'base': lambda: base.timed_steps(batches)[0],
               'variant': lambda: trainer.timed_steps(batches)[0],
               'grad_base': lambda: [base_grad(b) for b in batches],
               'grad_variant': lambda: [variant_grad(b) for b in batches]}
    for run in runners.values():                        # warm-up
      run()
    times = {key: [] for key in runners}
    round_ratios, grad_round_ratios = [], []
    for index in range(rounds):
      order = list(runners) if index % 2 == 0 else list(runners)[::-1]
      medians = {}
      for key in order:
        time.sleep(PAUSE_S)
        step_times = runners[key]()
        times[key] += step_times
        medians[key] = statistics.median(step_times)
      round_ratios.append(medians['base'] / medians['variant'])
      grad_round_ratios.append(medians['grad_base'] / medians['grad_variant'])
    kind = VARIANTS[name].kind
    difference = _max_relative_difference(grads, reference)
    ms = {key: 1e3 * statistics.median(values) for key, values in times.items()}
    rows.append({'variant': name, 'kind': kind, 'changes': VARIANTS[name].changes, 'base_ms': ms['base'],
                 'variant_ms': ms['variant'], 'speedup': ms['base'] / ms['variant'],
                 'round_ratios': ' '.join(f'{r:.2f}' for r in round_ratios),
                 'grad_base_ms': ms['grad_base'], 'grad_variant_ms': ms['grad_variant'],
                 'grad_speedup': ms['grad_base'] / ms['grad_variant'],
                 'grad_round_ratios': ' '.join(f'{r:.2f}' for r in grad_round_ratios),
                 'first_loss_equal': loss == base_loss, 'max_grad_diff': f'{difference:.1e}',
                 'same_gradient': difference < 1e-4})
    print(harness.markdown_table(rows[-1:], COLUMNS), flush=True)
    del trainer
  return rows


def main(argv=None) -> dict:
  from attention_jax import cpu_runtime
  cpu_runtime.configure()
  parser = harness.base_parser(__doc__.splitlines()[0], 'benchmarks/results/step_variants.json')
  parser.add_argument('--variants', nargs='+', default=list(VARIANTS), metavar='NAME',
                      help=f'variants to time (default: all): {", ".join(VARIANTS)}')
  parser.add_argument('--rounds', type=int, default=8, help='interleaved rounds of 5 steps per variant')
  args = parser.parse_args(argv)
  unknown = [name for name in args.variants if name not in VARIANTS]
  if unknown:
    parser.error(f'unknown variant(s) {", ".join(unknown)}; known: {", ".join(VARIANTS)}')
  if args.rounds < 1:
    parser.error(f'--rounds must be at least 1, got {args.rounds}')
  from benchmarks import throughput
  spec = throughput.QUICK_SPEC if args.quick else throughput.SPEC
  load_before = harness.load_average()
  cpu_runtime.place_worker_threads()
  rows = compare(args.variants, spec, args.rounds)
  print()
  print(harness.markdown_table(rows, COLUMNS))
  bad = [row['variant'] for row in rows if row['kind'] != 'upper bound' and not row['same_gradient']]
  if bad:
    print(f'\nNOT the same gradient: {", ".join(bad)}')
  return harness.write_results(MODULE, args.out, load_before, {'spec': spec, 'rounds': args.rounds,
                                                                'rows': rows})


if __name__ == '__main__':
  main()
