# Two commands do all the set-up: `make demo` (the main job) and `make test`.
# Each creates .venv with everything it needs when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/weightmom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,export]"
	touch $(BIN)/weightmom

.PHONY: demo test test-fast lint bench mlflow-ui
# The main job: a quick sweep on the embedded digits data (no download). runs/demo is scratch:
# each `make demo` starts it afresh. Point --out elsewhere for sweeps you want to keep.
demo: $(BIN)/weightmom
	rm -rf runs/demo
	$(BIN)/weightmom sweep digits-quick --trials 8 --out runs/demo

# Two pytest-xdist workers by default: the slow tests wait on Ray, MLflow and subprocesses for much of their
# time, so two at a time fill a 2-core machine (16 to 19 minutes of tests from a clean clone: 17 min 45 s at 7933de0, 18 min 23 s at 923b9c5).
# TEST_WORKERS=0: one process.
# worksteal: a worker that runs out takes queued tests from the other.
TEST_WORKERS ?= 2
test: $(BIN)/weightmom
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15

# The fast lane, while you work: everything that starts no Ray, MLflow server, browser or subprocess sweep.
test-fast: $(BIN)/weightmom
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/weightmom
	$(BIN)/ruff check .

bench: $(BIN)/weightmom
	$(BIN)/python benchmarks/pruner_overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py

# The demo sweep in the MLflow UI. The server stays in the foreground (Ctrl-C stops it); a watcher in the
# background prints the experiment's URL once the server answers (MLflow takes a few seconds to start).
MLFLOW_PORT ?= 5000
mlflow-ui: $(BIN)/weightmom
	@test -f runs/demo/sweep.json || { echo "runs/demo holds no sweep yet: run make demo first" >&2; exit 2; }
	@page=$$($(BIN)/python -c 'from sweeps.records.mlflow_ui import sweep_runs_page; print(sweep_runs_page("runs/demo"))'); \
	url="http://127.0.0.1:$(MLFLOW_PORT)$$page"; \
	( for attempt in $$(seq 120); do \
	    kill -0 $$$$ 2>/dev/null || exit 0; \
	    if $(BIN)/python -c "import urllib.request as r; r.urlopen('http://127.0.0.1:$(MLFLOW_PORT)/health', timeout=2)" \
	        2>/dev/null; then echo; echo "MLflow UI: $$url  (Ctrl-C stops it)"; exit 0; fi; \
	    sleep 1; \
	  done ) & \
	exec $(BIN)/mlflow ui --backend-store-uri sqlite:///runs/demo/mlflow.db --port $(MLFLOW_PORT)
