"""What a measurement ran on, for reports and benchmark tables.

    cpu_model()          # e.g. 'AMD EPYC' or 'Intel(R) Xeon(R) Platinum 8480+'
    describe()           # '<CPU model>, <n> cores, jax <version> on <backend>'
    cpuinfo_fields(keys) # the first value of each of these /proc/cpuinfo fields (Linux)
"""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
  """The CPU model name from lscpu (or /proc/cpuinfo)."""
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
      if line.startswith('Model name:'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return cpuinfo_fields(('model name',)).get('model name') or platform.processor() or 'unknown'


def cpuinfo_fields(keys, path: str = '/proc/cpuinfo') -> dict[str, str]:
  """{key: its first value in `path`} for those of `keys` the file has (values stripped); {} if it cannot be read
  (not Linux)."""
  fields = {}
  try:
    with open(path) as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key in keys and key not in fields:
          fields[key] = value.strip()
  except OSError:
    pass
  return fields


def describe() -> str:
  """'<CPU model>, <n> cores, jax <version> on <backend>' of this process's machine."""
  import jax
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return f'{cpu_model()}, {cores} cores, jax {jax.__version__} on {jax.default_backend()}'
