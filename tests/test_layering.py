"""The library's layers only point down, read from every module's import statements (no module is imported).

- attention_jax/ never imports the entry points, configs, benchmarks or tests above it;
- the pure attention functions (scorers, weightings, context, their memory-lean and copy forms, glimpses) import no
  Flax, directly or through the library modules they import;
- data pipelines and metrics import no models, modules, training, tasks, studies or decoding; they and the special
  ids run on the host, and neither they nor the library modules they import import jax, Flax, optax or orbax;
- models import no training, tasks, studies or data pipelines; the training package no models, tasks or studies;
  tasks no studies.

What is checked is the library's own import statements (a module and, through `import a.b.c`, the subpackages
above it). The top-level package `attention_jax/__init__.py` is left out: it re-exports the attention functions and
the Flax modules for users, so at run time importing any submodule also loads it; and third-party packages are not
followed (grain, which the data pipelines use, imports jax itself).
"""

import ast
import functools
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = 'attention_jax'

PURE_ATTENTION_MODULES = ('attention_jax.attention', 'attention_jax.score_functions', 'attention_jax.scoring',
                          'attention_jax.weighting', 'attention_jax.memory_efficient',
                          'attention_jax.copy_attention', 'attention_jax.glimpses')
# (modules under this prefix, library prefixes they must not import)
FORBIDDEN_INTERNAL = (
    ('attention_jax.data', ('attention_jax.models', 'attention_jax.modules', 'attention_jax.training',
                            'attention_jax.tasks', 'attention_jax.studies', 'attention_jax.decoding')),
    ('attention_jax.metrics', ('attention_jax.models', 'attention_jax.modules', 'attention_jax.training',
                               'attention_jax.tasks', 'attention_jax.studies', 'attention_jax.decoding')),
    ('attention_jax.models', ('attention_jax.training', 'attention_jax.tasks', 'attention_jax.studies',
                              'attention_jax.data')),
    ('attention_jax.training', ('attention_jax.models', 'attention_jax.tasks', 'attention_jax.studies')),
    ('attention_jax.tasks', ('attention_jax.studies',)),
)
ABOVE_THE_LIBRARY = ('experiments', 'configs', 'benchmarks', 'tests')
HOST_SIDE = ('attention_jax.data', 'attention_jax.metrics', 'attention_jax.special_tokens')
ACCELERATOR_STACK = ('jax', 'jaxlib', 'flax', 'optax', 'orbax')


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
  """Every module `source` imports, absolute: `from a.b import c` gives 'a.b' and 'a.b.c' (c may be a module);
  `import a.b.c` gives 'a.b.c' and the packages above it, 'a.b' and 'a' (their __init__s run too)."""
  names = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        parts = alias.name.split('.')
        names.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        anchor = module.split('.') if is_package else module.split('.')[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = '.'.join(anchor + ([node.module] if node.module else []))
      else:
        base = node.module
      names.add(base)
      names.update(f'{base}.{alias.name}' for alias in node.names)
  return names


@functools.cache
def library_imports() -> dict[str, set[str]]:
  """module name -> the modules it imports, for every module of the library (read once; not to be modified)."""
  graph = {}
  for path in sorted((ROOT / PACKAGE).rglob('*.py')):
    name = module_name(path)
    graph[name] = imported_names(path.read_text(), name, path.name == '__init__.py')
  return graph


def within(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + '.')


def importing(graph: dict[str, set[str]], modules, prefixes) -> dict[str, list[str]]:
  """{module: the names under any of `prefixes` it imports}, for those of `modules` that import any."""
  found = {m: sorted(n for n in graph[m] if any(within(n, prefix) for prefix in prefixes)) for m in modules}
  return {m: names for m, names in found.items() if names}


def reachable(graph: dict[str, set[str]], roots) -> set[str]:
  """The library modules that `roots` import, directly or through each other (the top-level package aside)."""
  seen, stack = set(), list(roots)
  while stack:
    module = stack.pop()
    if module in seen or module not in graph:
      continue
    seen.add(module)
    stack.extend(n for n in graph[module] if within(n, PACKAGE) and n != PACKAGE)
  return seen


def test_imported_names_resolve_relative_and_from_imports():
  source = 'import flax.linen as nn\nfrom . import scoring\nfrom ..data import batching\nfrom jax import numpy\n'
  assert imported_names(source, 'attention_jax.models.decoders', False) == {
      'flax', 'flax.linen', 'attention_jax.models', 'attention_jax.models.scoring', 'attention_jax.data',
      'attention_jax.data.batching', 'jax', 'jax.numpy'}
  assert imported_names('import attention_jax.data.batching as b\n', 'attention_jax.metrics.rouge', False) == {
      'attention_jax', 'attention_jax.data', 'attention_jax.data.batching'}
  assert 'attention_jax.data.batching' in imported_names('from . import batching\n', 'attention_jax.data', True)


def test_the_library_imports_nothing_above_it():
  graph = library_imports()
  assert len(graph) > 50                                             # the walk found the library
  assert importing(graph, graph, ABOVE_THE_LIBRARY) == {}


@pytest.mark.parametrize('prefix, forbidden', FORBIDDEN_INTERNAL)
def test_layers_only_point_down(prefix, forbidden):
  graph = library_imports()
  modules = [m for m in graph if within(m, prefix)]
  assert modules, prefix
  assert importing(graph, modules, forbidden) == {}


def test_pure_attention_functions_import_no_flax():
  graph = library_imports()
  seen = reachable(graph, PURE_ATTENTION_MODULES)
  assert set(PURE_ATTENTION_MODULES) <= seen
  assert importing(graph, seen, ('flax',)) == {}


def test_host_side_modules_import_no_accelerator_stack():
  graph = library_imports()
  modules = reachable(graph, [m for m in graph if any(within(m, prefix) for prefix in HOST_SIDE)])
  assert len(modules) > 20
  assert importing(graph, modules, ACCELERATOR_STACK) == {}


def test_reachable_follows_library_imports_and_skips_the_top_package():
  graph = {'attention_jax.a': {'attention_jax', 'attention_jax.b', 'numpy'}, 'attention_jax.b': {'attention_jax.c'},
           'attention_jax.c': set(), 'attention_jax.d': {'flax'}, 'attention_jax': {'attention_jax.d'}}
  assert reachable(graph, ['attention_jax.a']) == {'attention_jax.a', 'attention_jax.b', 'attention_jax.c'}


def test_importing_names_only_the_modules_that_import_under_a_prefix():
  graph = {'a': {'flax.linen', 'jax'}, 'b': {'numpy', 'flaxen'}, 'c': {'flax'}}
  assert importing(graph, ['a', 'b', 'c'], ('flax',)) == {'a': ['flax.linen'], 'c': ['flax']}
