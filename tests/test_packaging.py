"""pyproject.toml and requirements.txt list the same dependencies (requirements.txt stays for Colab)."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _requirement_lines(path):
  with open(path) as f:
    lines = [line.split('#', 1)[0].strip() for line in f]
  return sorted(line for line in lines if line and not line.startswith('-r'))


def test_pyproject_dependencies_mirror_requirements_txt():
  tomllib = pytest.importorskip('tomllib')      # Python >= 3.11
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  assert sorted(project['dependencies']) == _requirement_lines(os.path.join(ROOT, 'requirements.txt'))
  assert sorted(project['optional-dependencies']['test']) == _requirement_lines(
      os.path.join(ROOT, 'requirements-test.txt'))
  lower, upper = re.findall(r'\d+\.\d+', project['requires-python'])
  assert (lower, upper) == ('3.10', '3.13')
