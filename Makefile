# ci-fanout: `make demo` runs the main job, `make test` runs lint, types and tests.
# Both create and fill .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint types pytest venv tools clean docs bench goldens

# Node 22 and gitlab-ci-local for the real-runner tests (tests/realci), from the npm registry
TOOLS       := .tools
TOOLS_STAMP := $(TOOLS)/.installed
NODE_PKG    ?= node@22
GCL_PKG     ?= gitlab-ci-local@4.75.1

venv: $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): Makefile
	@mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent $(NODE_PKG) $(GCL_PKG)
	@$(TOOLS)/node_modules/.bin/node --version
	@touch $(TOOLS_STAMP)

$(STAMP): pyproject.toml setup.py ci_app/artifacts/_speedups.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

types: venv
	$(BIN)/mypy

pytest: venv tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint types pytest

demo: venv
	$(BIN)/python -m ci_app.demo

docs: venv
	$(BIN)/python -m ci_app.docs

bench: venv
	$(BIN)/python bench/parse_throughput.py

# Rewrite tests/data/goldens from the stored reports (review the diff before committing).
goldens: venv
	$(BIN)/python -m tests.artifacts.goldens --write
	$(BIN)/python -m tests.reporting.demo_golden --write

clean:
	rm -rf out .tools ci-fanout.duckdb .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
