"""The README's API snippet runs as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_snippet_runs():
  with open(os.path.join(ROOT, 'README.md')) as f:
    snippets = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  assert snippets
  namespace = {}
  exec(snippets[0], namespace)   # noqa: S102 - our own documentation
  assert namespace['context_BTD'].shape == (2, 4, 3)
  assert namespace['weights_BTS'].shape == (2, 4, 5)
