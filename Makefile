# Quick start: `make demo` runs the whole pipeline locally; `make test` runs the whole suite.
# Both set up .venv from the pinned lock files first (only Python, pip and apt needed).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup lock examples-setup demo test unit integration deploy-test lint typecheck format bench clean

setup: $(STAMP)

$(STAMP): requirements-dev.lock requirements.lock pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Regenerate both lock files (exact pins + sha256 hashes of every distribution on PyPI) from
# pyproject.toml. Run it after changing dependencies there, and again after a merge that did:
# pins already in the lock files are kept; only what is new or no longer allowed moves.
# `make lock UPGRADE=1` moves every pin to the newest version its range allows. The dev lock is
# constrained by the runtime lock, so both agree on every shared package.
UV_VERSION := 0.13.8
UV         := $(VENV)/bin/uv
LOCK       := $(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes \
              --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --quiet

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

lock: $(UV)
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev -c requirements.lock -o requirements-dev.lock

# The Java and Node consumer examples run in the integration suite: install their toolchain
# pieces (Debian jars, npm ci) and build them. A no-op when everything is in place.
examples-setup:
	bash examples/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup lint typecheck examples-setup
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit

integration: setup examples-setup
	$(PY) -m pytest tests/integration

deploy-test: setup
	$(PY) -m pytest tests/deploy

lint: setup
	$(PY) -m ruff check connector tests scripts
	$(PY) -m ruff format --check connector tests scripts

typecheck: setup
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format connector tests scripts
	$(PY) -m ruff check --fix connector tests scripts

# ccxt (a baseline) and py-spy (--profile) are for the benchmark only: installed into the venv
# here, never in the lock files.
# BENCH_ARGS: e.g. --quick while developing (the table then names the exact command).
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check 'ccxt>=4.4,<4.5' 'py-spy==0.4.3'
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
