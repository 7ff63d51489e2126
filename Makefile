# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench lab clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)

## demo: the main job on the synthetic demo clinic
demo: $(STAMP)
	$(BIN)/backcare demo

## test: lint (ruff check and the format check), then the whole test suite
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check backcare_analytics tests benchmarks

## bench: the performance benchmarks named in the issues (minutes, not part of `make test`)
bench: $(DEVSTAMP)
	$(BIN)/python -m benchmarks

## lab: JupyterLab on notebooks/
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf build reports/*/ .pytest_cache .ruff_cache
