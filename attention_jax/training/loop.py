"""The one training loop every experiment and the comparison sweep use.

    state = train(state, runner, batches, config.train, workdir, summarize=fn, evaluate=fn)

It restores the workdir's newest complete checkpoint (train state + data-iterator position) so rerunning the
same command resumes, and a run killed with `kill -9` ends with the parameters of an uninterrupted one; runs the
runner's compiled step (any parallel mode, any task: the loss was bound into the step); stops with
NonFiniteLossError naming the step when a loss or gradient is NaN/Inf (that update was skipped inside the step
and nothing after the last good checkpoint is saved); shows a progress bar; writes metrics.jsonl and TensorBoard;
keeps the latest N checkpoints and the best one by a validation metric; and evaluates every `eval_every` steps
through the task's callback.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from attention_jax.data.prefetch import BackgroundBatches
from attention_jax.training import checkpointing
from attention_jax.training import steps
from attention_jax.training.checkpointing import Checkpoints, abstract_like
from attention_jax.training.metrics_writer import MetricsWriter


class NonFiniteLossError(FloatingPointError):
  """Raised when a step's loss or gradient is NaN/Inf; nothing from that step was applied or saved."""


@dataclasses.dataclass
class TrainingRun:
  """What `train` returns: the final state (in the runner's placement) and timing of the steps it ran.

  Attributes:
    state: the trained state.
    step: the final step.
    first_step_seconds: wall time of the first step run in this process (compilation included), or None.
    steady_seconds: wall time of the steps after the first one.
    steady_units: the throughput counter (e.g. target tokens) summed over those steps.
  """
  state: steps.TrainState
  step: int
  first_step_seconds: float | None = None
  steady_seconds: float = 0.0
  steady_units: float = 0.0


def sum_metrics(accumulated: dict | None, metrics: dict) -> dict:
  """Adds step metrics (device arrays, no sync); nonfinite_step keeps the minimum, grad_norm the latest."""
  if accumulated is None:
    return dict(metrics)
  out = {}
  for k, v in metrics.items():
    if k == 'nonfinite_step':
      out[k] = jnp.minimum(accumulated[k], v)
    elif k == 'grad_norm':
      out[k] = v
    else:
      out[k] = accumulated[k] + v
  return out


def mean_per_count(metric_sums: dict, count_key: str = 'count') -> dict[str, float]:
  """Host-side summary of classification-style sums: every 'x_sum' divided by metric_sums[count_key] -> 'x'."""
  count = max(float(metric_sums[count_key]), 1.0)
  return {k[:-4]: float(v) / count for k, v in metric_sums.items() if k.endswith('_sum')}


def write_run_config(config, workdir: str) -> None:
  """workdir/config.json: the run's config as JSON (process 0 only), which inference rebuilds the model from."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))


def _warm_started(state, runner, init_from: str, is_chief: bool):
  """The fresh state with its parameters taken from run `init_from` wherever the two models share them."""
  host_state = runner.get_state(state)
  warm = checkpointing.warm_start_params(jax.device_get(host_state.params), init_from)
  if is_chief:
    print(f'Parameters from {init_from}: {len(warm.loaded)} arrays loaded; fresh: {", ".join(warm.fresh) or "none"}; '
          f'unused: {", ".join(warm.unused) or "none"}.', flush=True)
  return runner.put_state(host_state.replace(params=warm.params))


def train(state: steps.TrainState, runner, batches, train_config, workdir: str, *,
          summarize: Callable[[dict], dict[str, float]],
          throughput: tuple[str, str] = ('token_count', 'tokens_per_second'),
          evaluate: Callable[[steps.TrainState], dict[str, float]] | None = None,
          eval_images: Callable[[steps.TrainState], dict[str, np.ndarray]] | None = None,
          best_metric: str | None = 'loss', best_mode: str = 'min',
          on_start: Callable[[], None] | None = None) -> TrainingRun:
  """Trains `state` to train_config.num_steps, resuming from workdir if it holds a checkpoint.

  Args:
    state: the initial state, already placed by `runner.put_state`.
    runner: a parallel.Runner holding the compiled step.
    batches: a checkpointable iterator of this process's numpy batches (get_state / set_state).
    train_config: config.train (num_steps, log_every, eval_every, checkpoint_every, keep_checkpoints;
      prefetch_batches, default 0: that many batches built ahead on a thread, `data.prefetch.BackgroundBatches`).
    summarize: host metric sums -> the scalars logged for training (e.g. loss, perplexity).
    throughput: (metric-sum key, logged name): e.g. target tokens -> 'tokens_per_second'.
    evaluate: state (runner placement) -> validation results, every train_config.eval_every steps.
    eval_images: state -> {name: uint8 [H, W, 3]} logged to TensorBoard as 'validation/<name>' at each evaluation
      (e.g. attention heatmaps of fixed validation sentences); called on every process, written by process 0.
    best_metric / best_mode: which validation result picks the best checkpoint (None: no best checkpoint).
    train_config.init_from (optional): a fresh run (no checkpoint in workdir) starts from the parameters of that
      run's best checkpoint wherever the two models share them (`checkpointing.warm_start_params`); the optimiser
      state and the step start anew.
    on_start: called once the workdir's checkpoint (if any) has been restored into this model, before the first
      step: where a task writes its run's description (config.json, vocabularies), so that a resume refused
      because the checkpoint is another model's leaves them as they were.
  """
  is_chief = jax.process_index() == 0
  checkpoints = Checkpoints(workdir, keep=int(train_config.keep_checkpoints), best_metric=best_metric,
                            best_mode=best_mode)
  restored = checkpoints.restore_latest(abstract_like(runner.get_state(state)))
  if restored is not None:
    host_state, data_state = restored
    state = runner.put_state(host_state)
    batches.set_state(data_state)
  elif train_config.get('init_from', ''):
    state = _warm_started(state, runner, str(train_config.init_from), is_chief)
  step = int(np.ravel(jax.device_get(runner.get_state(state).step))[0])     # a seed-stacked state has [K] steps
  if restored is not None and is_chief:
    print(f'Resumed from {workdir}/checkpoints at step {step}.', flush=True)
  if on_start is not None:
    on_start()

  num_steps = int(train_config.num_steps)
  run = TrainingRun(state, step)
  writer = MetricsWriter(workdir)
  count_key, rate_name = throughput
  sums, last_log_time, last_log_step = None, time.time(), step
  progress = tqdm.tqdm(total=num_steps, initial=step, disable=not is_chief, dynamic_ncols=True, desc='train')
  at = lambda every: step % int(every) == 0 or step == num_steps

  def check_finite(sums):
    bad = int(np.min(jax.device_get(sums['nonfinite_step']))) if sums is not None else steps.NO_NONFINITE_STEP
    if bad != steps.NO_NONFINITE_STEP:
      checkpoints.wait()
      latest = checkpoints.latest.latest_step()
      raise NonFiniteLossError(
          f'Non-finite loss or gradient at step {bad}. That update was not applied and nothing after step '
          f'{latest} was saved; the checkpoints in {workdir} are intact. Lower train.learning_rate or check the data.')

  compiled_shapes = set()
  steady_units, steady_start, excluded = 0.0, None, 0.0    # excluded: evaluation time, not training throughput
  prefetch = int(train_config.get('prefetch_batches', 0))
  if prefetch:     # the next batches are built while the step computes; get_state() stays where training is
    batches = BackgroundBatches(batches, prefetch)
  try:
    while step < num_steps:
      batch = next(batches)
      shape = tuple(sorted((k, v.shape) for k, v in batch.items()))
      if shape not in compiled_shapes:
        # One program per batch shape: length-bucketed data compiles once per bucket, then never again.
        compiled_shapes.add(shape)
        if is_chief:
          progress.write(f'step {step + 1}: compiling the step for batch shape '
                         + ', '.join(f'{k} {list(v)}' for k, v in shape) + f' ({len(compiled_shapes)} so far)')
      state, metrics = runner.train_step(state, batch)
      if steady_start is None:
        jax.block_until_ready(metrics)
        run.first_step_seconds = time.time() - last_log_time
        steady_start = time.perf_counter()
      elif count_key in metrics:
        steady_units = steady_units + jnp.sum(metrics[count_key])      # on device: no sync per step
      step += 1
      sums = sum_metrics(sums, metrics)
      progress.update(1)
      if at(train_config.log_every):
        check_finite(sums)
        host = jax.device_get(sums)
        elapsed = max(time.time() - last_log_time, 1e-9)
        summary = summarize(host)
        summary.update(grad_norm=float(np.mean(host['grad_norm'])),
                       steps_per_second=(step - last_log_step) / elapsed)
        if count_key in host:
          summary[rate_name] = float(np.sum(host[count_key])) / elapsed
        writer.write(step, 'train', summary)
        progress.set_postfix({k: f'{summary[k]:.3f}' for k in ('loss', 'token_accuracy', 'accuracy') if k in summary})
        sums, last_log_time, last_log_step = None, time.time(), step
      if at(train_config.checkpoint_every):
        check_finite(sums)
        checkpoints.save(step, runner.get_state(state), batches.get_state())
      if evaluate is not None and at(train_config.eval_every):
        eval_start = time.perf_counter()
        results = evaluate(state)
        writer.write(step, 'validation', results)
        if eval_images is not None:
          writer.write_images(step, 'validation', eval_images(state))
        checkpoints.save_best(step, runner.get_state(state), batches.get_state(), results)
        if is_chief:
          progress.write(f'step {step}: validation ' + ', '.join(f'{k} {v:.4g}' for k, v in results.items()))
        excluded += time.perf_counter() - eval_start
    jax.block_until_ready(state)
    if steady_start is not None:
      run.steady_seconds = time.perf_counter() - steady_start - excluded
      run.steady_units = float(steady_units)
    run.state, run.step = state, step
    return run
  finally:
    if prefetch:
      batches.close()
    progress.close()
    writer.close()
    checkpoints.wait()
    checkpoints.close()


def train_then_evaluate(state: steps.TrainState, runner, batches, train_config, workdir: str, *,
                        evaluate_split: Callable[[object, str], dict[str, float]], best_metric: str,
                        best_mode: str = 'max', summarize: Callable[[dict], dict[str, float]] = mean_per_count,
                        throughput: tuple[str, str] = ('count', 'examples_per_second'),
                        splits: tuple[str, ...] = ('validation', 'test'),
                        on_start: Callable[[], None] | None = None) -> tuple[object, dict[str, dict]]:
  """`train` validating with evaluate_split(params, 'validation'), then evaluate_split on every split.

  Returns:
    (the trained parameters without a device axis, {split: results}).
  """
  state = train(state, runner, batches, train_config, workdir, summarize=summarize, throughput=throughput,
                evaluate=lambda st: evaluate_split(runner.get_state(st).params, 'validation'),
                best_metric=best_metric, best_mode=best_mode, on_start=on_start).state
  params = runner.get_state(state).params
  return params, {split: evaluate_split(params, split) for split in splits}
