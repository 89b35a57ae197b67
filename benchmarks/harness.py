"""Measurement helpers shared by the benchmark scripts: timing, compiled memory, machine description, tables.

    stats = time_call(jitted_fn, *args, repeats=10)        # {'median_ms', 'min_ms', 'runs_ms', ...}
    memory = compiled_memory(fn, *args)                    # bytes from XLA's memory_analysis
    print(markdown_table(rows, columns))
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from attention_jax import platform_info


def block(tree: Any) -> Any:
  """Waits for every array in `tree` (JAX dispatch is asynchronous)."""
  import jax
  return jax.block_until_ready(tree)


def time_call(fn: Callable, *args, repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
  """Median wall time of `fn(*args)` including `block_until_ready`, after `warmup` untimed calls.

  The first warm-up call compiles; its time is reported separately as `first_call_ms`.
  """
  start = time.perf_counter()
  block(fn(*args))
  first = time.perf_counter() - start
  for _ in range(max(warmup - 1, 0)):
    block(fn(*args))
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn(*args))
    runs.append(time.perf_counter() - start)
  return {'median_ms': 1e3 * statistics.median(runs), 'min_ms': 1e3 * min(runs), 'repeats': repeats,
          'first_call_ms': 1e3 * first, 'runs_ms': [round(1e3 * r, 3) for r in runs]}


def compiled_memory(fn: Callable, *args) -> dict[str, int]:
  """XLA's static memory plan of `jax.jit(fn)` for these arguments (bytes).

  `temp` is the scratch the compiled program allocates besides its arguments and outputs: the working set
  that grows with materialised intermediates. `peak` here means temp + output.
  """
  import jax
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  temp = int(analysis.temp_size_in_bytes)
  output = int(analysis.output_size_in_bytes)
  return {'temp_bytes': temp, 'output_bytes': output, 'argument_bytes': int(analysis.argument_size_in_bytes),
          'peak_bytes': temp + output}


def package_version(name: str) -> str | None:
  from importlib import metadata
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def machine_info(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
  """CPU model, core count, Python and library versions: the header of every result file."""
  packages = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', *extra_packages)
  return {
      'cpu': platform_info.cpu_model(),
      'cpu_count': os.cpu_count(),
      'affinity_cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
      'python': platform.python_version(),
      'platform': platform.platform(),
      'versions': {p: package_version(p) for p in packages},
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'time': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
      'load_average': load_average(),
  }


def rerun_command(module: str) -> str:
  """The command line that reproduces this run of `python -m module`."""
  return ' '.join(['python -m', module, *(shlex.quote(arg) for arg in sys.argv[1:])])


def fmt(value: Any, digits: int = 2) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}f}'
  return str(value)


def mib(num_bytes: int | None) -> str:
  return '-' if num_bytes is None else f'{num_bytes / 2 ** 20:.2f}'


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], digits: int = 2) -> str:
  """Rows (dicts) as a Markdown table with the given columns, floats rounded to `digits`."""
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
  for row in rows:
    lines.append('| ' + ' | '.join(fmt(row.get(c), digits) for c in columns) + ' |')
  return '\n'.join(lines)


def quick_results_path(default_out: str) -> str:
  """Where a `--quick` run writes when no --out is given: the system's temporary directory, so that a smoke run
  never overwrites the committed results (`default_out`) that BENCHMARKS.md quotes."""
  return os.path.join(tempfile.gettempdir(), 'attention_jax_benchmarks', os.path.basename(default_out))


class _BenchmarkParser(argparse.ArgumentParser):
  """Resolves --out after parsing: the given path; else the committed `default_out`; with --quick, a temporary
  path (`quick_results_path`)."""

  def __init__(self, *args, default_out: str, **kwargs):
    super().__init__(*args, **kwargs)
    self.default_out = default_out

  def parse_args(self, args=None, namespace=None):  # pylint: disable=signature-differs
    parsed = super().parse_args(args, namespace)
    if parsed.out is None:
      parsed.out = quick_results_path(self.default_out) if parsed.quick else self.default_out
    return parsed


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
  """The flags every benchmark script shares: --quick and --out (default `default_out`, or a temporary path
  with --quick: see `quick_results_path`)."""
  parser = _BenchmarkParser(description=description, default_out=default_out)
  parser.add_argument('--quick', action='store_true', help='tiny sizes and few repeats (smoke test, < 60 s)')
  parser.add_argument('--out', default=None,
                      help=f'where to write the JSON results (default {default_out}; with --quick, '
                           f'{quick_results_path(default_out)})')
  return parser


WORKER_PREFIX = '@@'   # marks a worker's result line on stdout (the libraries it loads may print too)


def print_worker_result(result: Any) -> None:
  """In a worker process: writes `result` (JSON-serialisable) as the line `run_worker` reads."""
  print(WORKER_PREFIX + json.dumps(result), flush=True)


def run_worker(module: str, args: Sequence[str], env: dict[str, str] | None = None,
               timeout: float | None = None) -> Any:
  """Runs `python -m module *args` in a fresh process and returns what it passed to `print_worker_result`;
  a worker that printed none raises with the end of its stderr."""
  output = subprocess.run([sys.executable, '-m', module, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
  for line in output.stdout.splitlines():
    if line.startswith(WORKER_PREFIX):
      return json.loads(line[len(WORKER_PREFIX):])
  raise RuntimeError(f'python -m {module} {" ".join(args)} gave no result (exit status {output.returncode}):\n'
                     f'{output.stderr[-3000:]}')


def write_json(path: str, payload: dict[str, Any]) -> None:
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(payload, f, indent=1, default=str)
  print(f'\nwrote {path}')


def write_results(module: str, path: str, load_before: tuple[float, float, float] | None, payload: dict[str, Any],
                  extra_packages: Sequence[str] = ()) -> dict[str, Any]:
  """Writes {'machine' (with the load average from before the run), **payload, 'command'} as JSON to `path`, prints
  the command that reruns `python -m module`, and returns what it wrote."""
  payload = {'machine': {**machine_info(extra_packages), 'load_average': load_before}, **payload,
             'command': rerun_command(module)}
  write_json(path, payload)
  print(f'rerun: {rerun_command(module)}')
  return payload


def compile_with_memory(fn: Callable, *args) -> tuple[Callable, dict[str, Any]]:
  """(compiled executable, its memory plan + compile seconds) for `jax.jit(fn)` at these arguments.

  Time the returned executable so the program measured is the program analysed (one compilation).
  """
  import jax
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  seconds = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  temp, output = int(analysis.temp_size_in_bytes), int(analysis.output_size_in_bytes)
  return compiled, {'temp_bytes': temp, 'output_bytes': output, 'argument_bytes': int(analysis.argument_size_in_bytes),
                    'peak_bytes': temp + output, 'compile_s': seconds}


def time_interleaved(calls: dict[str, tuple[Callable, tuple]], repeats: int = 10,
                     warmup: int = 2) -> dict[str, dict[str, Any]]:
  """Times several calls side by side: each round runs every call once, in turn, so that load from other
  processes hits all of them alike. Returns per name {'median_ms', 'min_ms', 'runs_ms', 'repeats'}."""
  for fn, args in calls.values():
    for _ in range(warmup):
      block(fn(*args))
  runs: dict[str, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, (fn, args) in calls.items():
      start = time.perf_counter()
      block(fn(*args))
      runs[name].append(time.perf_counter() - start)
  return {name: {'median_ms': 1e3 * statistics.median(r), 'min_ms': 1e3 * min(r), 'repeats': repeats,
                 'runs_ms': [round(1e3 * x, 3) for x in r]} for name, r in runs.items()}


def load_average() -> tuple[float, float, float] | None:
  """The 1/5/15-minute load averages (other processes share the cores; reported with the numbers)."""
  try:
    return os.getloadavg()
  except OSError:
    return None


def load_config(path: str):
  """`get_config()` of a config file (what `--config=path` gives the experiment scripts)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location('benchmark_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
