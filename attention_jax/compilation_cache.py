"""JAX's persistent compilation cache for the entry points: a second run of the same program on the same machine
loads its compiled programs from disk instead of compiling them again.

Compiling dominates the start of a run, every time a run starts: on the 2-core AMD EPYC machine of
BENCHMARKS.md section 4, the default config's first step waits 15 s for tracing and compiling, 2.6 s when it finds
its program in the cache. With the cache on, every program whose compilation took at least
`jax_persistent_cache_min_compile_time_secs` (JAX's default, 1 s) is written to disk, and a later process that
lowers the same program (same code, shapes, flags, jax/jaxlib version and devices) loads the executable instead.

Where. `$ATTENTION_JAX_COMPILATION_CACHE` if it names a directory, else `$XDG_CACHE_HOME/attention_jax/xla`
(`~/.cache/attention_jax/xla`), in a subdirectory per machine kind (`machine_key()`: the architecture and a hash
of the CPU's model and feature flags). JAX's cache key covers the program, the compile options and the software,
not the CPU it was compiled for, so a home directory shared by different machines would otherwise hand one an
executable built for the other's instruction set. The cache grows without bound unless
`jax_compilation_cache_max_size` is set (JAX's LRU eviction); an entry holds one compiled program (the default
config's and the benchmark model's train state and step: 0.25-0.37 MB each).

Precedence. A cache directory the user gave JAX (`JAX_COMPILATION_CACHE_DIR` or `jax_compilation_cache_dir`) is
kept as it is, and `JAX_ENABLE_COMPILATION_CACHE=false` keeps the cache off. `ATTENTION_JAX_COMPILATION_CACHE=off`
(or 0 / false / no) turns it off for the entry points; on / 1 / true / yes, or unset, is the default location; any
other value is the root directory (`~` expanded).

When. JAX opens the cache directory at its first compilation after one is set, and a process cannot move it
afterwards, so call `enable` before any compilation; the entry points call it on import (`experiments/__init__.py`).
The cache is trusted input: do not point it at a directory others can write to (a cached executable is code).
"""

from __future__ import annotations

import hashlib
import os
import platform

from attention_jax import platform_info

ENV_VARIABLE = 'ATTENTION_JAX_COMPILATION_CACHE'
OFF_VALUES = ('off', '0', 'false', 'no')
ON_VALUES = ('', 'on', '1', 'true', 'yes')        # the default location


def default_root() -> str:
  """`$XDG_CACHE_HOME/attention_jax/xla`, or `~/.cache/attention_jax/xla`."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'attention_jax', 'xla')


def machine_key(cpuinfo_path: str = '/proc/cpuinfo') -> str:
  """'<architecture>-<12 hex digits>': the digits hash the CPU's model name and feature flags (from
  /proc/cpuinfo where there is one, else `platform.processor()`), so that machines with different instruction sets
  get different cache directories."""
  fields = platform_info.cpuinfo_fields(('model name', 'flags', 'Features', 'CPU part', 'CPU implementer'),
                                        cpuinfo_path)
  for key in ('flags', 'Features'):                     # the same features in another order: the same machine
    if key in fields:
      fields[key] = ' '.join(sorted(fields[key].split()))
  description = repr(sorted(fields.items())) if fields else platform.processor()
  digest = hashlib.sha256(description.encode()).hexdigest()[:12]
  return f'{platform.machine() or "unknown"}-{digest}'


def enable(root: str | None = None) -> str:
  """Turns JAX's persistent compilation cache on in `root` (default: see the module docstring) / machine_key().

  Call it before the process's first JAX compilation. Returns what was done: 'cache in DIR', 'kept the cache
  directory JAX was given: DIR', 'off (ATTENTION_JAX_COMPILATION_CACHE=...)', 'off (jax_enable_compilation_cache
  is False)' or 'off: cannot create DIR (...)' (the default location not writable: the run goes on without one).

  Raises:
    ValueError: if ATTENTION_JAX_COMPILATION_CACHE (or `root`) names a directory that cannot be created.
  """
  import jax

  setting = os.environ.get(ENV_VARIABLE, '').strip()
  if setting.lower() in OFF_VALUES:
    return f'off ({ENV_VARIABLE}={setting})'
  if not jax.config.jax_enable_compilation_cache:
    return 'off (jax_enable_compilation_cache is False)'
  given = jax.config.jax_compilation_cache_dir
  if given:
    return f'kept the cache directory JAX was given: {given}'
  explicit = root or (None if setting.lower() in ON_VALUES else setting)
  if explicit:
    explicit = os.path.abspath(os.path.expanduser(explicit))
  directory = os.path.join(explicit or default_root(), machine_key())
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as error:
    if explicit:
      raise ValueError(f'cannot create the compilation cache directory {directory!r} ({error}); set '
                       f'{ENV_VARIABLE} to a writable directory, or to "off" to run without a cache') from error
    return f'off: cannot create {directory} ({error})'
  jax.config.update('jax_compilation_cache_dir', directory)
  return f'cache in {directory}'
