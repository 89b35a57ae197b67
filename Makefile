# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs requirements, trains the default config on the embedded date task
#   make test   creates .venv, installs requirements, runs the test suite
PYTHON ?= python3
VENV ?= .venv
# pytest-xdist workers for the suites (auto: one per core; each test file stays on one worker, so a module's
# fixtures are built once). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= auto
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
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow -n $(TEST_WORKERS) --dist loadfile

test-all: $(VENV)/.installed
	$(PY) -m pytest -m "" -n $(TEST_WORKERS) --dist loadfile

clean-venv:
	rm -rf $(VENV)
