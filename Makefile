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

.PHONY: venv emulators demo test lint bench clean

$(BIN)/modelkeep: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e '.[dev]'
	touch $@

venv: $(BIN)/modelkeep

$(AZURITE): Makefile
	npm install --prefix .node --no-save --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	touch $@

emulators: $(AZURITE)

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: lint emulators
	$(BIN)/pytest -q -n auto

bench: venv
	$(BIN)/python benchmarks/bench_store.py

clean:
	rm -rf $(VENV) .node build *.egg-info .pytest_cache .mypy_cache .ruff_cache
