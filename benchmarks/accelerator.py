"""The GPU path: cuDNN attention and the throughput model on an accelerator, attention_jax against PyTorch.

    python -m benchmarks.accelerator             # on a machine with jax[cuda] (and torch with CUDA for the peer)
    python -m benchmarks.accelerator --quick

1. `MultiHeadAttention(scorer='scaled_dot', dtype=bfloat16)` with implementation 'cudnn' (cuDNN's fused kernel
   through `jax.nn.dot_product_attention`), 'xla' and 'vmap' (the library's own) on the same parameters and
   inputs with a padding mask: the largest difference from a float32 'vmap' reference on the real query rows,
   and the forward + backward time (gradient of the output's sum with respect to parameters and inputs).
2. benchmarks.throughput's model (GRU 256 + Bahdanau + additive attention, V = 4000, batch 64 x 20 tokens, Adam):
   one training step (jit) and greedy / beam-4 decoding in attention_jax, and the same in PyTorch
   (benchmarks/torch_baseline.py's Trainer on CUDA: the tutorial's Python-stepped decoder), with
   benchmarks.throughput's own trainers (its JaxTrainer also runs on an image without the data stack).

Medians of timed calls after warm-up, each ending in a host transfer or `block_until_ready`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time

os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')   # leave GPU memory to PyTorch too

from benchmarks import harness  # noqa: E402
from benchmarks import throughput  # noqa: E402

MODULE = 'benchmarks.accelerator'


def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    runs.append(time.perf_counter() - start)
  return 1e3 * statistics.median(runs)


def attention_rows(shapes, repeats: int) -> list[dict]:
  import jax
  import jax.numpy as jnp
  from attention_jax.modules import MultiHeadAttention

  rows = []
  for batch, length, heads, head_dim in shapes:
    width = heads * head_dim
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (batch, length, width), jnp.float32)
    lengths = jnp.maximum(length // 2, (jnp.arange(batch) * 37) % (length + 1))
    mask = jnp.arange(length)[None, :] < lengths[:, None]
    make = lambda impl, dtype: MultiHeadAttention(num_heads=heads, scorer='scaled_dot', dtype=dtype,
                                                  implementation=impl)
    params = make('vmap', jnp.float32).init(keys[1], x, x, mask)
    reference, _ = make('vmap', jnp.float32).apply(params, x, x, mask)
    for impl in ('cudnn', 'xla', 'vmap'):
      module = make(impl, jnp.bfloat16)
      forward = jax.jit(lambda p, x, m: module.apply(p, x.astype(jnp.bfloat16), x.astype(jnp.bfloat16), m)[0])
      grad = jax.jit(jax.grad(lambda p, x, m: jnp.sum(forward(p, x, m).astype(jnp.float32)), argnums=(0, 1)))
      try:
        out = forward(params, x, mask)
        difference = float(jnp.max(jnp.where(mask[..., None], jnp.abs(out.astype(jnp.float32) - reference), 0.0)))
        ms = _median_ms(lambda: jax.block_until_ready(grad(params, x, mask)), repeats)
        rows.append({'B': batch, 'L': length, 'heads': heads, 'head_dim': head_dim, 'implementation': impl,
                     'max_abs_diff_vs_f32': difference, 'fwd_bwd_ms': ms, 'error': None})
      except (ValueError, NotImplementedError, RuntimeError) as error:   # refused by this GPU / jax build
        rows.append({'B': batch, 'L': length, 'heads': heads, 'head_dim': head_dim, 'implementation': impl,
                     'max_abs_diff_vs_f32': None, 'fwd_bwd_ms': None, 'error': str(error).splitlines()[0][:120]})
  return rows


def model_rows(spec: dict, repeats: int) -> list[dict]:
  batches = throughput.make_batches(spec, 4, seed=1)
  contenders = {'attention_jax': throughput.JaxTrainer(spec, threads=os.cpu_count() or 1)}
  try:
    import torch
    if torch.cuda.is_available():
      from benchmarks import torch_baseline
      contenders['pytorch'] = torch_baseline.Trainer(spec, threads=os.cpu_count() or 1, device='cuda')
  except ImportError:
    pass
  rows = []
  tokens = spec['batch_size'] * spec['target_length']
  for name, runner in contenders.items():
    cursor = itertools.count()
    step_ms = _median_ms(lambda: runner.step(batches[next(cursor) % len(batches)]), repeats, warmup=3)
    row = {'framework': name, 'device': str(runner.device), 'train_step_ms': step_ms,
           'tokens_per_s': tokens / (step_ms / 1e3)}
    for mode in throughput.DECODE_MODES:
      ms = _median_ms(lambda: runner.decode(mode, batches[0]['source'], spec['target_length']), repeats)
      row[f'{mode}_sentences_per_s'] = spec['batch_size'] / (ms / 1e3)
    rows.append(row)
  return rows


def main(argv=None) -> dict:
  parser = harness.base_parser(__doc__.splitlines()[0], os.path.join('benchmarks', 'results', 'accelerator.json'))
  args = parser.parse_args(argv)
  import jax
  repeats = 3 if args.quick else 20
  shapes = [(8, 256, 8, 64)] if args.quick else [(32, 256, 8, 64), (8, 1024, 8, 64), (4, 4096, 8, 64)]
  print(f'# {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}\n', flush=True)
  attention = attention_rows(shapes, repeats)
  print('## MultiHeadAttention, bfloat16, padding mask: forward + backward\n')
  print(harness.markdown_table(attention, ['B', 'L', 'heads', 'head_dim', 'implementation', 'max_abs_diff_vs_f32',
                                           'fwd_bwd_ms', 'error'], digits=4))
  models = model_rows(throughput.SPEC, repeats)
  print('\n## benchmarks.throughput\'s model: training step and decoding (batch 64 x 20 tokens)\n')
  print(harness.markdown_table(models, ['framework', 'device', 'train_step_ms', 'tokens_per_s',
                                        'greedy_sentences_per_s', 'beam_sentences_per_s'], digits=2))
  result = {'command': harness.rerun_command(MODULE), 'device_kind': jax.devices()[0].device_kind,
            'jax': jax.__version__, 'attention': attention, 'models': models}
  harness.write_json(args.out, result)
  return result


if __name__ == '__main__':
  main()
