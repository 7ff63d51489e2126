# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
BENCHSTAMP := $(VENV)/.installed-bench

.PHONY: demo test lint bench lab clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The extras (pyproject.toml): lab = JupyterLab for clinicians (demo, lab); dev = the tests;
# bench = the command-line tools the benchmarks compare against.
$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	touch $@

$(DEVSTAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(BENCHSTAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(DEVSTAMP)

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
bench: $(BENCHSTAMP)
	$(BIN)/python -m benchmarks

## lab: JupyterLab on notebooks/
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf build reports/*/ .pytest_cache .ruff_cache
