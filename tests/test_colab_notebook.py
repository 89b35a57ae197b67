"""experiments/colab_tpu.ipynb executed top to bottom (nbclient) on CPU in SMOKE mode with 4 simulated devices."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab_tpu.ipynb')


def _with_parameters(notebook, **values):
  """The notebook with its `parameters` cell's assignments replaced (papermill's convention, without papermill)."""
  cell = next(c for c in notebook.cells if 'parameters' in c.metadata.get('tags', ()))
  lines = [line for line in cell.source.splitlines() if line.split('=', 1)[0].strip() not in values]
  cell.source = '\n'.join(lines + [f'{name} = {value!r}' for name, value in values.items()])
  return notebook


@pytest.mark.slow
def test_colab_notebook_runs_top_to_bottom_in_smoke_mode(tmp_path, monkeypatch):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  notebook = _with_parameters(nbformat.read(NOTEBOOK, as_version=4), ROOT=str(tmp_path), SMOKE=True)
  # The kernel and its `!python` commands: this interpreter, 4 simulated devices (pmap over 4, batch 64 / 4).
  monkeypatch.setenv('PATH', os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  client = nbclient.NotebookClient(notebook, timeout=900, kernel_name='python3',
                                   resources={'metadata': {'path': ROOT}})
  client.execute()   # raises CellExecutionError with the cell and its traceback if a Python cell fails

  text = '\n'.join(output.get('text', '') for cell in notebook.cells if cell.cell_type == 'code'
                   for output in cell.get('outputs', ()))
  assert '4 devices' in text
  # `!` commands do not raise on failure: check what each one was meant to write.
  for mode in ('pmap', 'sharded'):
    records = [json.loads(line) for line in open(tmp_path / 'workdirs' / f'default_{mode}' / 'metrics.jsonl')]
    assert any(r['split'] == 'test' for r in records), mode
    assert f'{mode:8s} ' in text
  report = (tmp_path / 'results' / 'compare_quick' / 'report.md').read_text()
  for variant in ('no_attention', 'bahdanau_additive', 'luong_general'):
    assert variant in report
  assert 'SMOKE: the real-data comparison is skipped' in text
  for name in ('scorers', 'compile_time'):
    assert json.loads((tmp_path / 'bench' / f'{name}.json').read_text())
