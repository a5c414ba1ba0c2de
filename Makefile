PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Azurite, the Azure Blob Storage emulator the tests start (tests/azure.py): an npm package,
# installed into the git-ignored .node/. 3.35 is the last release that runs on Node.js 20.
AZURITE_VERSION := 3.35.0
AZURITE := .node/node_modules/.bin/azurite-blob

# The dev extra pins torch to the CPU wheel this machine kind keeps in /opt/wheels; look
# there even where PIP_FIND_LINKS is not set (PyPI's torch is a CUDA build of several GB).
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-*.whl),--find-links /opt/wheels)

.PHONY: venv emulators demo test lint docs bench clean

# One venv; each target installs what it needs into it: the demo only the demo extra (a
# minute on a fresh machine), the tests and tools the dev extra. uv installs them: it
# downloads and unpacks in parallel, and takes the dev extra in about 30 s where pip took
# over 10 minutes on a busy 2-core machine with an empty cache. --compile-bytecode, as pip
# does: where PYTHONDONTWRITEBYTECODE is set (it is on CI machines) nothing would cache
# the compiled modules, and every `modelkeep` command would compile SQLAlchemy again
# (2 s per command instead of 0.6 s).
INSTALL := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv

$(VENV)/.demo-installed: pyproject.toml src/modelkeep/store/_bytegroup.c | $(BIN)/python
	$(INSTALL) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml src/modelkeep/store/_bytegroup.c | $(BIN)/python
	$(INSTALL) $(FIND_LINKS) -e '.[dev]'
	touch $@

venv: $(VENV)/.dev-installed

$(AZURITE): Makefile
	npm install --prefix .node --no-save --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	touch $@

emulators: $(AZURITE)

demo: $(VENV)/.demo-installed
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# --durations: the slowest tests in every CI log, to keep the run inside its budget.
# The project's own modules compiled once too: the suite starts the CLI a few thousand times.
test: lint emulators
	$(BIN)/python -m compileall -q src
	$(BIN)/pytest -q -n auto --durations=25

# docs/cli.md is generated from the commands (tests/test_cli_grammar.py fails when stale)
docs: venv
	$(BIN)/python -m modelkeep.cli.docs > docs/cli.md

bench: venv
	$(BIN)/python benchmarks/bench_store.py

clean:
	rm -rf $(VENV) .node build *.egg-info .pytest_cache .mypy_cache .ruff_cache
