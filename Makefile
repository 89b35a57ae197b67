# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs requirements, trains the default config on the embedded date task
#   make test   creates .venv, installs requirements, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-slow test-all clean-venv

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) -m experiments.train --config=configs/default.py --workdir=workdirs/default

test: $(VENV)/.installed
	$(PY) -m pytest

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest -m ""

clean-venv:
	rm -rf $(VENV)
