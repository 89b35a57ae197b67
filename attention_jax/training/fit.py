"""A small single-device training loop shared by the non-translation applications (sentiment, digit strips).

    state = fit(state, train_step, batches, train_config, workdir, evaluate=fn)

It gives those applications what the translation loop gives translation: resume from the workdir's newest
checkpoint (state + data-iterator position), the best checkpoint by a validation metric, metrics in
metrics.jsonl and TensorBoard, a progress bar, and a stop naming the step on a non-finite loss.
`train_step(state, batch) -> (state, metrics)` must return metric sums with 'loss_sum' and a denominator
'count', and leave the state unchanged on a non-finite loss (as steps.train_step does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import numpy as np
import tqdm

from attention_jax.training.checkpointing import Checkpoints, abstract_like
from attention_jax.training.metrics_writer import MetricsWriter


def fit(state, train_step: Callable, batches, train_config, workdir: str,
        evaluate: Callable | None = None, best_metric: str = 'loss', best_mode: str = 'min'):
  """Trains to train_config.num_steps (resuming if possible); returns the final state."""
  checkpoints = Checkpoints(workdir, keep=int(train_config.keep_checkpoints), best_metric=best_metric,
                            best_mode=best_mode)
  restored = checkpoints.restore_latest(abstract_like(state))
  if restored is not None:
    state, data_state = restored
    batches.set_state(data_state)
  step = int(jax.device_get(state.step))
  writer = MetricsWriter(workdir)
  progress = tqdm.tqdm(total=int(train_config.num_steps), initial=step, desc='train', dynamic_ncols=True)
  sums, started = None, time.time()
  try:
    while step < int(train_config.num_steps):
      state, metrics = train_step(state, next(batches))
      step += 1
      progress.update(1)
      sums = metrics if sums is None else jax.tree.map(lambda a, b: a + b, sums, metrics)
      at = lambda every: step % int(every) == 0 or step == int(train_config.num_steps)
      if at(train_config.log_every) or at(train_config.checkpoint_every):
        host = jax.device_get(sums)
        loss = float(host['loss_sum']) / max(float(host['count']), 1.0)
        if not math.isfinite(loss):
          checkpoints.wait()
          raise FloatingPointError(f'Non-finite loss between the last check and step {step}; no state after step '
                                   f'{checkpoints.latest.latest_step()} was saved.')
        if at(train_config.log_every):
          summary = {k[:-4] if k.endswith('_sum') else k: float(v) / max(float(host['count']), 1.0)
                     for k, v in host.items() if k != 'count'}
          summary['examples_per_second'] = float(host['count']) / max(time.time() - started, 1e-9)
          writer.write(step, 'train', summary)
          progress.set_postfix(loss=f'{loss:.3f}')
          sums, started = None, time.time()
      if at(train_config.checkpoint_every):
        checkpoints.save(step, state, batches.get_state())
      if evaluate is not None and at(train_config.eval_every):
        results = evaluate(state, 'validation')
        writer.write(step, 'validation', results)
        checkpoints.save_best(step, state, batches.get_state(), results)
        progress.write(f'step {step}: validation ' + ', '.join(f'{k} {v:.4g}' for k, v in results.items()
                                                                 if np.isscalar(v)))
    return state
  finally:
    progress.close()
    writer.close()
    checkpoints.wait()
    checkpoints.close()
