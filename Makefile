# Every target has a one-line comment. `make test` is exactly what CI runs (.ci/run).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# Telemetry off for every tool, in every process started from here.
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: setup up test lint browser format bench clean

$(BIN)/rastro: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Rastro needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/rastro  # .venv with Rastro and its dev tools (again when pyproject.toml changes); console assets
	$(BIN)/python -m api.console.assets

up: setup  # run the platform in embedded mode with demo data; prints its URLs; Ctrl-C stops it
	$(BIN)/rastro up

lint: setup  # ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

browser:  # Debian's chromium for the browser tests: installed with apt-get when missing (root)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || { echo "The browser tests need Debian's chromium: apt-get install chromium"; exit 1; }

test: lint browser  # lint, then every test (pytest's exit code 5, "no tests collected", is not a failure)
	$(BIN)/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

format: setup  # apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  # run every benchmark under bench/ and print their figures (tracking needs wrk)
	$(BIN)/python -m bench.warehouse
	$(BIN)/python -m bench.eventlog
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.attribution_accuracy
	$(BIN)/python -m bench.attribution_scale
	$(BIN)/python -m bench.fraud
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.tracking

clean:  # remove the virtualenv and local state (.rastro: all embedded data!)
	rm -rf $(VENV) .rastro .mypy_cache .ruff_cache .pytest_cache
