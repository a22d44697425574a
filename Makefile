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

# Downloads from PyPI get cut off now and then (a 79 MB ray wheel stopped at 46 MB in one
# CI run): pip resumes a cut download and retries a failed connection, and the whole
# install is tried up to three times before setup gives up.
export PIP_RETRIES ?= 10
export PIP_RESUME_RETRIES ?= 20
INSTALL_ATTEMPTS ?= 3

$(BIN)/deepmixing: pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip || echo "pip upgrade failed; going on with $$($(BIN)/pip --version)"
	@for attempt in $$(seq $(INSTALL_ATTEMPTS)); do \
		$(BIN)/pip install --quiet $(PIP_CONSTRAINT_FLAG) -e '.[dev]' && exit 0; \
		echo "install attempt $$attempt of $(INSTALL_ATTEMPTS) failed; retrying"; sleep 10; \
	done; exit 1
	touch $@

setup: $(BIN)/deepmixing

demo: setup
	$(BIN)/deepmixing demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check mixing_env rl_models tests benchmarks
