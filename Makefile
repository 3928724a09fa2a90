# Two commands do all the set-up: `make demo` (the main job) and `make test`.
# Each creates .venv with everything it needs when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/weightmom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/weightmom

.PHONY: demo test lint bench
demo: $(BIN)/weightmom
	mkdir -p runs
	$(BIN)/weightmom train --dataset digits --model lenet300 --method weightmom --density 0.05 --epochs 20 --json runs/demo.json

test: $(BIN)/weightmom
	$(BIN)/python -m pytest -q

lint: $(BIN)/weightmom
	$(BIN)/ruff check .

bench: $(BIN)/weightmom
	$(BIN)/python benchmarks/pruner_overhead.py
