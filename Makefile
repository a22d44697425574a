# Two commands on a fresh clone:
#   make demo   - set up .venv, then run the whole job on the built-in synthetic songs
#   make test   - set up .venv, then run the test suite
PYTHON ?= python3.11
VENV ?= .venv
# CPU-only by default; GPU users: make TORCH_CONSTRAINTS= ...
TORCH_CONSTRAINTS ?= constraints/cpu.txt
PIP_CONSTRAINT_FLAG = $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS),)
BIN = $(VENV)/bin

.PHONY: setup demo test lint bench

$(BIN)/deepmixing: pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_CONSTRAINT_FLAG) -e '.[dev]'
	touch $@

setup: $(BIN)/deepmixing

demo: setup
	$(BIN)/deepmixing demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check mixing_env rl_models tests benchmarks
