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

.PHONY: demo test lint bench mlflow-ui
# The main job: a quick sweep on the embedded digits data (no download). runs/demo is scratch:
# each `make demo` starts it afresh. Point --out elsewhere for sweeps you want to keep.
demo: $(BIN)/weightmom
	rm -rf runs/demo
	$(BIN)/weightmom sweep digits-quick --trials 8 --out runs/demo

test: $(BIN)/weightmom
	$(BIN)/python -m pytest -q

lint: $(BIN)/weightmom
	$(BIN)/ruff check .

bench: $(BIN)/weightmom
	$(BIN)/python benchmarks/pruner_overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py

mlflow-ui: $(BIN)/weightmom
	$(BIN)/mlflow ui --backend-store-uri sqlite:///runs/demo/mlflow.db --port 5000
