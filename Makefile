# StreamForge — `make run` and `make test` work on a fresh machine: each creates .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-future dev lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: a looser requirement would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

# Debian's chromium for the UI test (installed only when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium package (needs root)" >&2; fi; }

run: $(STAMP)
	$(BIN)/streamforge run

# One worker per core; a module's tests stay on one worker (its module fixtures: a broker, dagster dev).
PYTEST_PARALLEL := -n auto --dist loadfile

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The whole suite with the clock a year ahead (Debian's libfaketime, installed when missing): the
# tests load fixed historical days and must not depend on today's date.
test-future: $(STAMP) browser
	@command -v faketime >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; \
	  else echo "faketime missing: install Debian's faketime package (needs root)" >&2; exit 1; fi; }
	faketime -f '+365d' $(BIN)/pytest $(PYTEST_PARALLEL)

dev: $(STAMP)
	$(BIN)/streamforge dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.e2e_candles

clean:
	rm -rf var .pytest_cache
