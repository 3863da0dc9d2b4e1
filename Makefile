# Two commands from a fresh clone:
#   make run    start the daemon on the bundled example county (SQLite, console channel)
#   make test   lint, type-check and run the whole test suite
# Each creates .venv and installs what it needs on first use.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint drill clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/yujing run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# the quick loop before a commit: everything but the slow multi-process tests
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

drill: $(STAMP)
	$(BIN)/yujing drill --replay examples/liulin/scenarios/coldwave-2026-01.json --at 2026-01-07T00:00:00+08:00

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
