"""Classify Fashion-MNIST clothes placed at random on 60x60 canvases by looking a few glimpses at a time (Mnih et
al. 2014's recurrent attention model), or with the CNN baseline.

    python -m experiments.prepare_data --dataset=fashion_canvases            # once, ~1 min (fashion_cluttered too)
    python -m experiments.train --config=configs/glimpses.py --workdir=workdirs/glimpses
    python -m experiments.train --config=configs/glimpses.py:soft --workdir=workdirs/glimpses_soft
    python -m experiments.train --config=configs/glimpses.py:cnn,cluttered --workdir=workdirs/cnn_cluttered

ARG (optional, comma-separated): 'soft' (DRAW-style Gaussian glimpses trained by backpropagation instead of
REINFORCE), 'cnn' (the CNN baseline), 'glimpses=N', 'cluttered' (the canvases with 4 pieces of 8x8 clutter),
'smoke' (a few steps at tiny sizes, for tests). The glimpse paths of test canvases are drawn in attention.png.
Measured figures and the sweep that produced them: configs/glimpses_sweep.py and the README.
"""

from attention_jax.tasks.visual_attention import default_config


def apply_options(config, arg):
  for option in (arg or '').split(','):
    if not option:
      continue
    if option == 'soft':
      config.model.glimpse = 'soft'
    elif option == 'cnn':
      config.model.kind = 'cnn'
    elif option == 'cluttered':
      config.data.name = 'fashion_cluttered'
    elif option.startswith('glimpses='):
      config.model.num_glimpses = int(option[len('glimpses='):])
    elif option == 'smoke':
      config.model.update(what_dim=8, where_dim=8, glimpse_dim=16, hidden_dim=16, conv_layers=((4, 10, 5),),
                          conv_hidden_dim=16, num_glimpses=min(int(config.model.num_glimpses), 3))
      config.train.update(batch_size=8, num_steps=6, log_every=3, eval_every=6, checkpoint_every=3)
      config.eval.update(batch_size=16, num_examples_shown=2)
    else:
      raise ValueError(f'Unknown option {option!r} in the config argument. Valid options: soft, cnn, cluttered, '
                       'glimpses=N, smoke.')
  return config


def get_config(arg=None):
  return apply_options(default_config(), arg)
