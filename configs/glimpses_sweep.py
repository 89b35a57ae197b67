"""Recurrent attention with 4 / 6 / 8 hard glimpses (REINFORCE), 6 soft DRAW-style glimpses (backpropagation) and a
CNN of about the same size (0.50M vs 0.52M parameters), 3 seeds each, on Fashion-MNIST clothes at random places on
60x60 canvases: the same data, batch (64) and number of steps (6,000, ~7 epochs) for all.

    python -m experiments.prepare_data --dataset=fashion_canvases          # once, ~1 min
    python -m experiments.seeded_runs --config=configs/glimpses_sweep.py --workdir=results/glimpses_fashion

ARG (optional, comma-separated): 'long' (4x the budget, 24,000 steps, for RAM with 6 glimpses and the CNN, one
seed each: does the policy learn to look with more training?), 'cluttered' (the canvases with 4 pieces of 8x8
clutter), 'smoke' (2 variants x 2 seeds of a few steps at tiny sizes, for tests).

    python -m experiments.seeded_runs --config=configs/glimpses_sweep.py:long --workdir=results/glimpses_fashion_long
    python -m experiments.prepare_data --dataset=fashion_cluttered      # once, for:
    python -m experiments.seeded_runs --config=configs/glimpses_sweep.py:cluttered --workdir=results/glimpses_cluttered

Measured on the cluttered canvases (results/glimpses_cluttered, 3 seeds, 2 Sapphire Rapids cores shared with
other jobs): test error CNN 0.362, RAM 4 / 6 / 8 glimpses 0.389 / 0.411 / 0.400, soft 6 0.499; the two RAM runs
whose policy looks at the item most (42% and 23% of later glimpses) are the best RAM runs.

Each report (e.g. results/glimpses_fashion/report.md) gives test error mean +- std over seeds, how often a glimpse
after the first lands on the item, and each variant's glimpse paths (attention_<variant>.png). Measured figures for
the clean canvases: the README.
"""

from configs.glimpses import apply_options
from attention_jax.tasks.visual_attention import default_config


def get_config(arg=None):
  options = [o for o in (arg or '').split(',') if o]
  config = apply_options(default_config(), ','.join(o for o in options if o == 'cluttered'))
  config.sweep = dict(
      variants=(
          {'name': 'cnn', 'kind': 'cnn'},
          {'name': 'ram4', 'num_glimpses': 4},
          {'name': 'ram6', 'num_glimpses': 6},
          {'name': 'ram8', 'num_glimpses': 8},
          {'name': 'soft6', 'glimpse': 'soft', 'num_glimpses': 6},
      ),
      seeds=(0, 1, 2),
      metrics=('error', 'accuracy', 'glimpses_on_item', 'parameters'),
      contrasts=(
          {'claim': 'Mnih et al.: RAM with 6 glimpses beats a CNN of comparable size on translated digits',
           'a': 'ram6', 'b': 'cnn', 'metric': 'accuracy', 'expect': 'a_ahead'},
          {'claim': 'Mnih et al.: more glimpses, lower error (8 vs 4)', 'a': 'ram8', 'b': 'ram4',
           'metric': 'accuracy', 'expect': 'a_ahead'},
          {'claim': 'soft (backpropagated) vs hard (REINFORCE) glimpses, 6 each', 'a': 'soft6', 'b': 'ram6',
           'metric': 'accuracy', 'expect': 'tie'},
      ),
  )
  if 'long' in options:
    config.train.update(num_steps=24000, eval_every=8000, checkpoint_every=4000)
    config.sweep.variants = tuple(v for v in config.sweep.variants if v['name'] in ('cnn', 'ram6'))
    config.sweep.seeds = (0,)
    config.sweep.contrasts = config.sweep.contrasts[:1]
  if 'smoke' in options:
    apply_options(config, 'smoke')
    config.sweep.variants = ({'name': 'cnn', 'kind': 'cnn'}, {'name': 'ram3', 'num_glimpses': 3})
    config.sweep.seeds = (0, 1)
    config.sweep.contrasts = config.sweep.contrasts[:1]
    config.sweep.contrasts[0]['a'] = 'ram3'
  unknown = [o for o in options if o not in ('long', 'cluttered', 'smoke')]
  if unknown:
    raise ValueError(f'Unknown option(s) {unknown} in the config argument. Valid options: long, cluttered, smoke.')
  return config
