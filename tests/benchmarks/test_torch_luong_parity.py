"""The PyTorch Luong baseline (benchmarks/torch_baseline.py) computes attention_jax's Seq2Seq(encoder='bilstm',
decoder='luong', decoder_cell='lstm', scorer='general', input_feeding=True): same logits, attention weights, loss,
gradients and decoded tokens from the same parameters, on a padded batch."""

import pytest

torch = pytest.importorskip('torch')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from attention_jax import decoding  # noqa: E402
from attention_jax.models import build_model  # noqa: E402
from attention_jax.tasks import translation  # noqa: E402
from benchmarks import torch_baseline  # noqa: E402

VOCAB, EMBED, HIDDEN, SOURCE_LENGTH = 11, 6, 5, 7
LABEL_SMOOTHING = 0.1
# Rows of different lengths, PAD (0) on the right, EOS (2) last; the last source column is PAD in every row.
SOURCE = np.array([[5, 6, 7, 8, 9, 2, 0], [4, 10, 2, 0, 0, 0, 0], [7, 2, 0, 0, 0, 0, 0]], np.int32)
TARGET_OUT = np.array([[4, 5, 6, 2, 0], [8, 2, 0, 0, 0], [9, 10, 7, 5, 2]], np.int32)
_SHIFTED = np.concatenate([np.ones((3, 1), np.int32), TARGET_OUT[:, :-1]], 1)      # BOS (1), then target_out
TARGET_IN = np.where(_SHIFTED == 2, 0, _SHIFTED)                                        # EOS never an input


def _flax_model_and_params(encoder_layers=1):
  config = dict(encoder='bilstm', decoder='luong', decoder_cell='lstm', scorer='general', input_feeding=True,
                embed_dim=EMBED, hidden_dim=HIDDEN, encoder_layers=encoder_layers)
  model = build_model(config, source_vocab_size=VOCAB, target_vocab_size=VOCAB, max_source_length=SOURCE_LENGTH)
  params = model.init(jax.random.key(0), SOURCE, TARGET_IN)['params']
  # Non-zero biases and no symmetry left by the initialisers: every parameter gets its own noise.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  return model, params


def _torch_model(params, encoder_layers=1):
  model = torch_baseline.LuongSeq2Seq(VOCAB, VOCAB, EMBED, HIDDEN, encoder_layers=encoder_layers)
  model.load_state_dict(torch_baseline.luong_params_from_flax(params))   # strict: every name and shape
  return model.eval()


def _jax_loss(model, params, batch):
  loss_sum, count, _ = translation.sequence_loss(params, batch, jax.random.key(0), train=False, model=model,
                                                 label_smoothing=LABEL_SMOOTHING)
  return loss_sum / count


def _batch():
  return {'source': SOURCE, 'target_in': TARGET_IN, 'target_out': TARGET_OUT}


def _long(x):
  return torch.from_numpy(np.asarray(x)).long()


@pytest.mark.parametrize('encoder_layers', [1, 2])
def test_logits_weights_and_loss_match_attention_jax(encoder_layers):
  model, params = _flax_model_and_params(encoder_layers)
  expected_logits, expected_weights = model.apply({'params': params}, SOURCE, TARGET_IN)
  torch_model = _torch_model(params, encoder_layers)
  with torch.no_grad():
    logits, weights = torch_model(_long(SOURCE), _long(TARGET_IN))
  assert logits.shape == (3, 5, VOCAB) and weights.shape == (3, 5, SOURCE_LENGTH)
  logit_diff = np.max(np.abs(logits.numpy() - np.asarray(expected_logits)))
  assert logit_diff < 1e-5, logit_diff
  np.testing.assert_allclose(weights.numpy(), np.asarray(expected_weights), atol=1e-6)
  assert np.all(weights.numpy().transpose(0, 2, 1)[SOURCE == 0] == 0)   # PAD positions: exactly zero weight
  loss = torch_baseline.luong_loss(logits, _long(TARGET_OUT), LABEL_SMOOTHING).item()
  np.testing.assert_allclose(loss, float(_jax_loss(model, params, _batch())), rtol=1e-6)


def test_trimming_a_batch_to_its_longest_rows_changes_nothing():
  model, params = _flax_model_and_params()
  batch = torch_baseline.trim_batch(_batch())
  assert batch['source'].shape == (3, 6) and batch['target_out'].shape == (3, 5)
  torch_model = _torch_model(params)
  with torch.no_grad():
    logits, _ = torch_model(_long(batch['source']), _long(batch['target_in']))
  loss = torch_baseline.luong_loss(logits, _long(batch['target_out']), LABEL_SMOOTHING).item()
  np.testing.assert_allclose(loss, float(_jax_loss(model, params, _batch())), rtol=1e-6)


def test_gradients_match_attention_jax():
  model, params = _flax_model_and_params()
  expected = torch_baseline.luong_params_from_flax(jax.grad(lambda p: _jax_loss(model, p, _batch()))(params))
  torch_model = _torch_model(params)
  logits, _ = torch_model(_long(SOURCE), _long(TARGET_IN))
  torch_baseline.luong_loss(logits, _long(TARGET_OUT), LABEL_SMOOTHING).backward()
  for name, parameter in torch_model.named_parameters():
    if '.bias_ih' in name:   # PyTorch's second LSTM bias (zero, Flax has one): its gradient is bias_hh's
      expected_grad = expected[name.replace('bias_ih', 'bias_hh')]
    else:
      expected_grad = expected[name]
    np.testing.assert_allclose(parameter.grad.numpy(), expected_grad.numpy(), atol=1e-5, err_msg=name)


def test_greedy_and_beam_search_match_attention_jax():
  model, params = _flax_model_and_params()
  torch_model = _torch_model(params)
  expected_greedy, _ = decoding.greedy_decode(model, params, jnp.asarray(SOURCE), max_length=6)
  greedy = torch_baseline.greedy_decode(torch_model, _long(SOURCE), 6)
  np.testing.assert_array_equal(greedy.numpy(), np.asarray(expected_greedy))
  expected_beam, _ = decoding.beam_search(model, params, jnp.asarray(SOURCE), max_length=6, beam_size=3,
                                          length_penalty=0.6)
  beam = torch_baseline.beam_search(torch_model, _long(SOURCE), 6, beam_size=3, length_penalty=0.6)
  np.testing.assert_array_equal(beam.numpy(), np.asarray(expected_beam))


def test_luong_trainer_steps_from_attention_jax_params():
  model, params = _flax_model_and_params()
  spec = {'vocab_size': VOCAB, 'embed_dim': EMBED, 'hidden_dim': HIDDEN, 'dropout_rate': 0.0,
          'label_smoothing': LABEL_SMOOTHING, 'warmup_steps': 0, 'learning_rate': 1e-2}
  trainer = torch_baseline.LuongTrainer(spec, threads=1, params=params)
  first = trainer.step(_batch())
  np.testing.assert_allclose(first, float(_jax_loss(model, params, _batch())), rtol=1e-6)   # loss before the update
  losses = [trainer.step(_batch()) for _ in range(5)]
  assert losses[-1] < first
  tokens = trainer.greedy(SOURCE, max_length=4)
  assert tokens.shape == (3, 4) and tokens.dtype == np.int32
  assert trainer.beam_search(SOURCE, max_length=4, beam_size=2).shape == (3, 4)
