"""The throughput benchmark's Keras/TensorFlow baseline: the same translation model written as in the
TensorFlow tutorial "Neural machine translation with attention" (the GRU + BahdanauAttention version).

As in the tutorial: an `Encoder` (Embedding + GRU returning sequences and state), a `BahdanauAttention` layer
(W1, W2, V Dense layers), a `Decoder` called once per target position in a Python loop inside a
`tf.function` train step (so the loop is unrolled into one graph) with teacher forcing, `tf.GradientTape`,
sparse categorical cross-entropy from logits, Adam. Keras 3 on the TensorFlow backend.
Changes that make it the same model as attention_jax's Bahdanau decoder (and faster than the tutorial):
  * the decoder steps a `keras.layers.GRUCell` instead of calling a GRU layer on a length-1 sequence, and
    W2(keys) is computed once per batch instead of at every step;
  * the attention projections have no bias; the decoder starts from tanh(bridge(encoder state)) and reads
    out through tanh(readout([s_t; c_t; y_{t-1}])) before the output layer (RNNsearch, as attention_jax);
  * no dropout.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class Encoder(keras.Model):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
    super().__init__()
    self.embedding = keras.layers.Embedding(vocab_size, embed_dim)
    self.gru = keras.layers.GRU(hidden_dim, return_sequences=True, return_state=True,
                                recurrent_initializer='glorot_uniform')

  def call(self, source):
    """source [B, S] -> outputs [B, S, H], state [B, H]."""
    return self.gru(self.embedding(source))


class BahdanauAttention(keras.layers.Layer):

  def __init__(self, units: int):
    super().__init__()
    self.W1 = keras.layers.Dense(units, use_bias=False)
    self.W2 = keras.layers.Dense(units, use_bias=False)
    self.V = keras.layers.Dense(1, use_bias=False)

  def call(self, query, values, projected_values):
    """query [B, H], values [B, S, H], projected_values = W2(values) -> context [B, H], weights [B, S, 1]."""
    query_with_time_axis = tf.expand_dims(query, 1)
    score = self.V(tf.nn.tanh(self.W1(query_with_time_axis) + projected_values))
    attention_weights = tf.nn.softmax(score, axis=1)
    context_vector = tf.reduce_sum(attention_weights * values, axis=1)
    return context_vector, attention_weights


class Decoder(keras.Model):

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, attention_dim: int):
    super().__init__()
    self.embedding = keras.layers.Embedding(vocab_size, embed_dim)
    self.attention = BahdanauAttention(attention_dim)
    self.bridge = keras.layers.Dense(hidden_dim)
    self.cell = keras.layers.GRUCell(hidden_dim, recurrent_initializer='glorot_uniform')
    self.readout = keras.layers.Dense(hidden_dim)
    self.fc = keras.layers.Dense(vocab_size)

  def call(self, token, hidden, enc_output, projected_keys):
    """One step: token [B] -> logits [B, V], new hidden [B, H]."""
    context_vector, _ = self.attention(hidden, enc_output, projected_keys)
    embedded = self.embedding(token)
    output, states = self.cell(tf.concat([embedded, context_vector], axis=-1), [hidden])
    readout = tf.nn.tanh(self.readout(tf.concat([output, context_vector, embedded], axis=-1)))
    return self.fc(readout), states[0]


class Trainer:
  """The model, its Adam optimiser and one `tf.function` training step (the benchmarks.throughput protocol)."""

  name = 'keras'

  def __init__(self, spec: dict, threads: int):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    self.settings = (f'tensorflow {tf.__version__}, keras {keras.__version__}, tf.function, '
                     f'intra_op={threads}, inter_op={threads}')
    self.encoder = Encoder(spec['vocab_size'], spec['embed_dim'], spec['hidden_dim'])
    self.decoder = Decoder(spec['vocab_size'], spec['embed_dim'], spec['hidden_dim'], spec['attention_dim'])
    self.optimizer = keras.optimizers.Adam(spec['learning_rate'])
    self.loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    self._train_step = tf.function(self._step)
    self.num_params = None

  def _step(self, source, target_in, target_out):
    with tf.GradientTape() as tape:
      enc_output, enc_hidden = self.encoder(source)
      dec_hidden = tf.nn.tanh(self.decoder.bridge(enc_hidden))
      projected_keys = self.decoder.attention.W2(enc_output)
      loss = 0.0
      for t in range(target_in.shape[1]):                   # unrolled into the graph, as in the tutorial
        predictions, dec_hidden = self.decoder(target_in[:, t], dec_hidden, enc_output, projected_keys)
        loss += self.loss_object(target_out[:, t], predictions)
      loss = loss / target_in.shape[1]
    variables = self.encoder.trainable_variables + self.decoder.trainable_variables
    gradients = tape.gradient(loss, variables)
    self.optimizer.apply_gradients(zip(gradients, variables))
    return loss

  def step(self, batch: dict[str, np.ndarray]) -> float:
    loss = self._train_step(batch['source'], batch['target_in'], batch['target_out'])
    if self.num_params is None:
      variables = self.encoder.trainable_variables + self.decoder.trainable_variables
      self.num_params = int(sum(np.prod(v.shape) for v in variables))
    return float(loss.numpy())

  def timed_steps(self, batches: list[dict[str, np.ndarray]]) -> tuple[list[float], float]:
    times, loss = [], 0.0
    for batch in batches:
      start = time.perf_counter()
      loss = self.step(batch)          # .numpy() synchronises
      times.append(time.perf_counter() - start)
    return times, loss
