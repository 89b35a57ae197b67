"""The translation task: encoder-attention-decoder models trained on a translation dataset, then tested.

    config = default_config('date')          # every field, grouped by concern; config files start from it
    results = train_and_evaluate(config, workdir)

Rerunning the same command with the same workdir resumes from the newest complete checkpoint (state, step,
PRNG key and data-iterator position), so an interrupted run ends with the same parameters as an
uninterrupted one. Outputs in the workdir: config.json, vocab.json, metrics.jsonl, tensorboard/,
checkpoints/, best/, and the test report (translation_report): report.md, test_results.json, heatmaps/*.png.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils

from attention_jax.data import default_data_config, make_task
from attention_jax.data import registry as dataset_registry
from attention_jax.data import batching
from attention_jax.models import build_model
from attention_jax.special_tokens import PAD_ID
from attention_jax.tasks import translation_eval
from attention_jax.tasks import translation_report
from attention_jax.training import loop
from attention_jax.training import attention_losses
from attention_jax.training import parallel
from attention_jax.training import steps
from attention_jax.training.config import check_integer_fields, distributed_defaults, train_defaults
from attention_jax.training.config import validate_training_config
from attention_jax.training.sequence_losses import sequence_metric_sums, summarize_sequence_metrics, token_losses

NAME = 'translation'


def default_config(dataset: str = 'date') -> ml_collections.ConfigDict:
  """A complete config grouped by concern: data, model, train, eval (+ experiment, seed, distributed)."""
  config = ml_collections.ConfigDict()
  config.experiment = NAME               # the task that runs it (attention_jax.tasks.TASKS)
  config.seed = 0                        # parameters, dropout and data order all derive from it

  config.data = default_data_config(dataset)

  config.model = ml_collections.ConfigDict()
  config.model.encoder = 'bigru'         # gru | lstm | bigru | bilstm | transformer
  config.model.decoder = 'bahdanau'      # bahdanau | luong | none (no-attention baseline)
  config.model.decoder_cell = 'gru'      # gru | lstm
  config.model.scorer = 'additive'       # any name in attention_jax.scoring.names()
  config.model.scorer_options = {}       # e.g. {'hidden_dim': 64}; see attention_jax.scoring
  config.model.weighting = 'softmax'     # softmax | sparsemax | entmax15 | monotonic (Raffel et al. 2017)
  config.model.locality = 'global'       # global | local_m | local_p (Luong et al. 2015 local attention)
  config.model.local_window = 10         # local attention's D: the window [p_t - D, p_t + D], sigma = D / 2
  config.model.monotonic_noise = 1.0     # monotonic: std of the pre-sigmoid noise in training (0 = none)
  config.model.monotonic_bias_init = -4.0   # monotonic: initial energy bias r
  config.model.embed_dim = 32
  config.model.hidden_dim = 64           # encoder per direction and decoder size
  config.model.encoder_layers = 1
  config.model.num_heads = 4             # transformer encoder only
  config.model.mlp_dim = 128             # transformer encoder only
  config.model.transformer_attention = 'vmap'   # transformer encoder only: vmap | xla | cudnn (GPU, bfloat16)
  config.model.input_feeding = True      # luong only: feed the attentional state into the next step
  config.model.copy_attention = False    # bahdanau only: the pointer-generator (See et al. 2017), copying source
                                         # tokens; needs one vocabulary for source and target (sentencepiece)
  config.model.dropout_rate = 0.0
  config.model.dtype = 'float32'         # float32 | bfloat16 (mixed precision; params and softmax stay fp32)

  config.train = train_defaults()
  config.train.batch_type = 'sentences'  # sentences (batch_size each) | tokens (batch_tokens padded tokens each)
  config.train.batch_tokens = 0          # batch_type 'tokens': global padded tokens per batch (max(S_b, T_b) each)
  config.train.coverage_loss_weight = 0.0       # lambda of See et al.'s coverage loss sum_i min(a_t,i, c_t,i)
  config.train.guided_alignment_weight = 0.0    # lambda of the cross-entropy to the gold links (datasets with them)

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256
  config.eval.max_examples = 0           # 0 = the whole split
  config.eval.beam_size = 1              # 1 = greedy; > 1: the test report scores greedy and this beam
  config.eval.length_penalty = 0.6       # GNMT alpha for beam search
  config.eval.coverage_penalty = 0.0     # GNMT beta for beam search: beta * sum_i log(min(sum_t a_t,i, 1))
  config.eval.num_heatmaps = 4           # attention heatmaps saved at the end
  config.eval.tensorboard_heatmaps = 2   # teacher-forced attention of this many validation sentences logged to
                                         # TensorBoard at every evaluation (Images tab; 0 = none)
  config.eval.num_examples = 8           # example translations in the test report
  config.eval.length_buckets = tuple(config.data.bucket_boundaries)   # test scores by source length (tokens
                                         # incl. EOS; ascending upper bounds, the last bucket open; () = none)
  config.eval.validation_bleu = True     # decode the validation split at every eval (BLEU, exact match)
  config.eval.rouge = False              # also ROUGE-1/2/L F1 of the decoded outputs (summarisation)

  config.distributed = distributed_defaults()
  return config


def validate_config(config) -> None:
  """Checks a translation config's values before any data is built or compiled.

  Raises:
    ValueError: naming the field, the bad value and the valid choices (or the numbers that do not divide).
  """
  validate_training_config(config)
  dataset_registry.get(config.data.name, kind='translation')
  check_integer_fields(config, (('eval', 'max_examples', 0), ('eval', 'beam_size', 0), ('eval', 'num_heatmaps', 0),
                                ('eval', 'tensorboard_heatmaps', 0),
                                ('eval', 'num_examples', 0), ('train', 'batch_tokens', 0)))
  edges = tuple(config.eval.length_buckets)
  batching.check_boundaries(edges, 'config.eval.length_buckets')
  if list(edges) != sorted(set(edges)):
    raise ValueError(f'config.eval.length_buckets={edges} must be strictly ascending source lengths.')
  batching.check_batch_type(config.train.batch_type, 'config.train.batch_type')
  if config.train.batch_type == 'tokens' and not config.train.batch_tokens:
    raise ValueError("config.train.batch_type='tokens' needs config.train.batch_tokens > 0 (padded tokens a batch).")
  batching.check_boundaries(tuple(config.data.bucket_boundaries), 'config.data.bucket_boundaries')
  for field in ('coverage_loss_weight', 'guided_alignment_weight'):
    if config.train.get(field, 0.0) < 0:
      raise ValueError(f'config.train.{field}={config.train[field]} must be >= 0 (0 disables it).')
    if config.train.get(field, 0.0) and config.model.decoder == 'none':
      raise ValueError(f"config.train.{field} is a loss on the attention weights; decoder='none' has none.")
  if config.eval.get('coverage_penalty', 0.0) < 0:
    raise ValueError(f'config.eval.coverage_penalty={config.eval.coverage_penalty} must be >= 0 (0 disables it).')
  # Builds (does not initialise) the model: unknown encoder/decoder/scorer names fail here with the valid ones.
  build_model(config.model, source_vocab_size=8, target_vocab_size=8, max_source_length=8)
  parallel.check_batch_size(config.train.parallel, int(config.eval.batch_size), field='eval.batch_size')


def build(config):
  """(data task, model) for a config. With several processes, process 0 builds the dataset while the others wait."""
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      make_task(config.data)
    multihost_utils.sync_global_devices('dataset built')
  task = make_task(config.data)
  model = build_model(config.model, source_vocab_size=task.source_tokenizer.vocab_size,
                      target_vocab_size=task.target_tokenizer.vocab_size, max_source_length=task.max_source_length)
  return task, model


def initial_state(config, task, model) -> steps.TrainState:
  source = jnp.zeros((1, task.max_source_length), jnp.int32)
  target = jnp.zeros((1, task.max_target_length), jnp.int32)
  return steps.create_train_state(model, steps.make_optimizer(config.train), config.seed, source, target)


def check_task_supports(config, task) -> None:
  """Raises ValueError when the config asks for something the built dataset lacks (gold alignments)."""
  if config.model.get('copy_attention', False) and (task.source_tokenizer.to_json()
                                                    != task.target_tokenizer.to_json()):
    raise ValueError(f'config.model.copy_attention copies source tokens into the output, so source and target need '
                     f'one vocabulary; dataset {config.data.name!r} with tokenizer {config.data.tokenizer!r} has two. '
                     "Use config.data.tokenizer='sentencepiece' (one model shared by both sides).")
  if config.train.get('guided_alignment_weight', 0.0) and not task.has_alignments:
    raise ValueError(f'config.train.guided_alignment_weight needs gold alignments; dataset {config.data.name!r} '
                     'has none (datasets with them: the synthetic tasks and bible_en_es).')


def sequence_loss(params, batch: dict, rng, *, train: bool, model, label_smoothing: float = 0.0,
                  coverage_loss_weight: float = 0.0, guided_alignment_weight: float = 0.0):
  """Token cross-entropy of teacher forcing on {'source' [B, S], 'target_in' [B, T], 'target_out' [B, T]}, plus
  lambda times the coverage loss and the guided-alignment loss (on batch['alignment'] [B, T, S]) when their weights
  are set: (sum over non-PAD target tokens, their number, metric sums) -- a steps.train_step loss.

  The metric 'loss_sum' stays the cross-entropy alone (perplexity); the attention losses are reported as
  'coverage_loss_sum' and 'alignment_loss_sum' (with 'aligned_count', the target tokens with gold links)."""
  logits, attention_BTS = model.apply({'params': params}, batch['source'], batch['target_in'], train=train,
                                      rngs={'dropout': rng})
  losses = token_losses(logits, batch['target_out'], label_smoothing)
  metrics = sequence_metric_sums(logits, batch['target_out'], losses)
  target_mask = batch['target_out'] != PAD_ID
  objective = jnp.sum(losses * target_mask.astype(jnp.float32))
  if coverage_loss_weight:
    metrics['coverage_loss_sum'] = attention_losses.coverage_loss_sum(attention_BTS, target_mask)
    objective = objective + coverage_loss_weight * metrics['coverage_loss_sum']
  if guided_alignment_weight:
    metrics['alignment_loss_sum'], metrics['aligned_count'] = attention_losses.guided_alignment_loss_sum(
        attention_BTS, batch['alignment'], target_mask)
    objective = objective + guided_alignment_weight * metrics['alignment_loss_sum']
  return objective, metrics['token_count'], metrics


def sequence_eval(params, batch: dict, *, model):
  """Teacher-forced evaluation: (metric sums, attention weights [B, T, S]) -- a steps.eval_step function."""
  logits, attention = model.apply({'params': params}, batch['source'], batch['target_in'], train=False)
  return sequence_metric_sums(logits, batch['target_out'], token_losses(logits, batch['target_out'], 0.0)), attention


def make_runner(config, model, *, mode: str | None = None, vmap_seeds: bool = False) -> parallel.Runner:
  """A runner of the translation loss and evaluation in `mode` (default: config.train.parallel)."""
  loss_fn = functools.partial(sequence_loss, model=model, label_smoothing=float(config.train.label_smoothing),
                              coverage_loss_weight=float(config.train.get('coverage_loss_weight', 0.0)),
                              guided_alignment_weight=float(config.train.get('guided_alignment_weight', 0.0)))
  return parallel.Runner(mode or config.train.parallel, functools.partial(steps.train_step, loss_fn=loss_fn),
                         functools.partial(steps.eval_step, eval_fn=functools.partial(sequence_eval, model=model)),
                         vmap_seeds=vmap_seeds)


def train_batches(config, task):
  """This process's training batches: config.train.batch_size (or batch_tokens) is global, over every device and
  process; with buckets every global batch size is a multiple of the device count."""
  processes = jax.process_count()
  return task.train_iterator(batch_size=int(config.train.batch_size) // processes, seed=int(config.seed),
                             process_index=jax.process_index(), process_count=processes,
                             batch_type=config.train.batch_type,
                             batch_tokens=int(config.train.batch_tokens) // processes,
                             batch_multiple=max(jax.device_count() // processes, 1))


def save_run_files(config, task, workdir: str) -> None:
  """config.json and vocab.json, what experiments.translate rebuilds the model and its tokenizers from."""
  loop.write_run_config(config, workdir)
  if jax.process_index() == 0:
    task.save_tokenizers(workdir)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains config on its dataset in workdir (resuming if possible); returns the final test metrics."""
  os.makedirs(workdir, exist_ok=True)
  task, model = build(config)
  check_task_supports(config, task)

  runner = make_runner(config, model)
  state = runner.put_state(initial_state(config, task, model))
  batches = train_batches(config, task)
  validate = lambda state: translation_eval.evaluate(runner, state, task, model, 'validation', config,
                                                     with_decoding=bool(config.eval.validation_bleu))
  images = lambda state: translation_eval.heatmap_images(runner.get_state(state).params, task, model, config)
  run = loop.train(state, runner, batches, config.train, workdir, summarize=summarize_sequence_metrics,
                   evaluate=validate, eval_images=images, best_metric='loss', best_mode='min',
                   on_start=lambda: save_run_files(config, task, workdir))
  state, step = run.state, run.step

  return translation_report.test_and_report(runner, state, task, model, config, workdir, step)
