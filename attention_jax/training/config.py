"""The fields of a translation experiment config, with defaults (config files start from this), and their checks."""

from __future__ import annotations

import ml_collections

from attention_jax.data import check_dataset_name, default_data_config
from attention_jax.models import build_model
from attention_jax.training import parallel
from attention_jax.training.steps import SCHEDULES


def translation_config(dataset: str = 'date') -> ml_collections.ConfigDict:
  """A complete config grouped by concern: data, model, train, eval (+ seed, distributed)."""
  config = ml_collections.ConfigDict()
  config.seed = 0                        # parameters, dropout and data order all derive from it

  config.data = default_data_config(dataset)

  config.model = ml_collections.ConfigDict()
  config.model.encoder = 'bigru'         # gru | lstm | bigru | bilstm | transformer
  config.model.decoder = 'bahdanau'      # bahdanau | luong | none (no-attention baseline)
  config.model.decoder_cell = 'gru'      # gru | lstm
  config.model.scorer = 'additive'       # any name in attention_jax.scoring.names()
  config.model.scorer_options = {}       # e.g. {'hidden_dim': 64}; see attention_jax.scoring
  config.model.weighting = 'softmax'     # softmax | sparsemax
  config.model.embed_dim = 32
  config.model.hidden_dim = 64           # encoder per direction and decoder size
  config.model.encoder_layers = 1
  config.model.num_heads = 4             # transformer encoder only
  config.model.mlp_dim = 128             # transformer encoder only
  config.model.transformer_attention = 'vmap'   # transformer encoder only: vmap | xla | cudnn (GPU, bfloat16)
  config.model.input_feeding = True      # luong only: feed the attentional state into the next step
  config.model.dropout_rate = 0.0
  config.model.dtype = 'float32'         # float32 | bfloat16 (mixed precision; params and softmax stay fp32)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64           # global, over all devices and processes
  config.train.num_steps = 2000
  config.train.learning_rate = 3e-3
  config.train.schedule = 'constant'     # constant (after warm-up) | rsqrt
  config.train.warmup_steps = 100
  config.train.grad_clip_norm = 1.0      # 0 disables
  config.train.weight_decay = 0.0
  config.train.label_smoothing = 0.0
  config.train.parallel = 'sharded'      # sharded (jit + NamedSharding) | pmap | single
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 3

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256
  config.eval.max_examples = 0           # 0 = the whole split
  config.eval.beam_size = 1              # 1 = greedy
  config.eval.length_penalty = 0.6       # GNMT alpha for beam search
  config.eval.num_heatmaps = 4           # attention heatmaps saved at the end
  config.eval.validation_bleu = True     # decode the validation split at every eval (BLEU, exact match)
  config.eval.rouge = False              # also ROUGE-1/2/L F1 of the decoded outputs (summarisation)

  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = ''   # 'host:port' for multi-process runs (or env, see distributed.py)
  config.distributed.num_processes = 0
  config.distributed.process_id = -1
  config.distributed.auto = False               # True on Cloud TPU pods: let JAX find the processes
  return config


def validate_config(config) -> None:
  """Checks a translation config's values before any data is built or compiled.

  Call after `jax.distributed.initialize` (the batch checks use the device and process counts).

  Raises:
    ValueError: naming the field, the bad value and the valid choices (or the numbers that do not divide).
  """
  train, evaluation = config.train, config.eval
  parallel.check_mode(train.parallel)
  check_dataset_name(config.data.name)
  if train.schedule not in SCHEDULES:
    raise ValueError(f'Unknown config.train.schedule {train.schedule!r}. Valid schedules: {", ".join(SCHEDULES)}.')
  for group, name, minimum in (('train', 'batch_size', 1), ('train', 'num_steps', 1), ('train', 'log_every', 1),
                               ('train', 'eval_every', 1), ('train', 'checkpoint_every', 1),
                               ('train', 'keep_checkpoints', 1), ('train', 'warmup_steps', 0),
                               ('eval', 'batch_size', 1), ('eval', 'max_examples', 0), ('eval', 'beam_size', 0),
                               ('eval', 'num_heatmaps', 0)):
    value = config[group][name]
    if int(value) != value or value < minimum:
      raise ValueError(f'config.{group}.{name}={value!r} must be an integer >= {minimum}.')
  if not 0.0 <= train.label_smoothing < 1.0:
    raise ValueError(f'config.train.label_smoothing={train.label_smoothing} must be in [0, 1).')
  if not train.learning_rate > 0.0:
    raise ValueError(f'config.train.learning_rate={train.learning_rate} must be positive.')
  if train.grad_clip_norm < 0.0:
    raise ValueError(f'config.train.grad_clip_norm={train.grad_clip_norm} must be >= 0 (0 disables clipping).')
  # Builds (does not initialise) the model: unknown encoder/decoder/scorer names fail here with the valid ones.
  build_model(config.model, source_vocab_size=8, target_vocab_size=8, max_source_length=8)
  parallel.check_batch_size(train.parallel, int(train.batch_size))
  parallel.check_batch_size(train.parallel, int(evaluation.batch_size), field='eval.batch_size')
