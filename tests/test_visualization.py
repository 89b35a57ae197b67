"""Attention heatmaps: source tokens on x, output tokens on y, the weights as given, gold links outlined."""

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np

from attention_jax import visualization


def _labels(ticks):
  return [t.get_text() for t in ticks]


def test_figure_puts_source_on_x_and_output_on_y_with_the_weights_cropped():
  weights = np.arange(20, dtype=np.float32).reshape(4, 5) / 20.0      # [T=4, S=5], larger than the labels
  gold = np.zeros((4, 5))
  gold[0, 1] = gold[2, 0] = 1.0
  fig = visualization.attention_figure(weights, ['a', ' ', 'b', '</s>'], ['x', 'y', '</s>'], title='demo',
                                       gold=gold)
  ax = fig.axes[0]
  try:
    assert _labels(ax.get_xticklabels()) == ['a', '\u2423', 'b', '</s>']     # a space stays visible
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [0, 0, 0, 90]   # characters upright
    assert _labels(ax.get_yticklabels()) == ['x', 'y', '</s>']
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ('source', 'output', 'demo')
    # Rows are output steps and columns source positions, cropped to the labelled [3, 4] corner.
    np.testing.assert_array_equal(ax.images[0].get_array(), weights[:3, :4])
    outlined = sorted((round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches)
    assert outlined == [(0, 2), (1, 0)]                                      # (column, row) of each gold link
  finally:
    plt.close(fig)


def test_plot_attention_writes_a_png_and_creates_directories(tmp_path):
  path = str(tmp_path / 'nested' / 'heatmap.png')
  weights = np.full((2, 3), 1.0 / 3.0, np.float32)
  assert visualization.plot_attention(weights, ['a', 'b', 'c'], ['x', 'y'], path) == path
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
  assert not plt.get_fignums()                                               # the figure was closed


def test_word_attention_html_escapes_words_and_scales_by_the_maximum(tmp_path):
  path = visualization.word_attention_html([(['<b>', 'good'], np.array([0.25, 0.5]), 'caption & more')],
                                           str(tmp_path / 'a.html'))
  text = open(path).read()
  assert '&lt;b&gt;' in text and 'caption &amp; more' in text
  assert 'rgba(255,80,0,0.50)' in text and 'rgba(255,80,0,1.00)' in text
