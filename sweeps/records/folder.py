"""The sweep folder's layout: the name of every file and folder a sweep keeps under OUT, in one place.

The driver, recovery, reconciling and the read-only commands (`pareto`, `best`, `export`, `table`) all
find the same files by these names; docs/outputs.md describes each. Plain strings and no imports, so
any wing can use them.
"""

from __future__ import annotations

SWEEP_STATE_FILE = "sweep.json"       # what a resumed driver re-attaches to; written last in a start-up
SPACE_COPY = "space.yaml"             # the space the sweep ran: `pareto` and `best` need nothing else
LOCK = ".sweep.lock"                  # one driver per folder (records/lock.py)
TRIALS = "trials.parquet"             # one row per finished trial
TRIALS_JOURNAL = "trials.journal.jsonl"   # rows not yet in TRIALS, one JSON line each (results.journal_path)
STEPS = "steps.parquet"               # one row per finished chain step but a trial's last (its row is in TRIALS)
FRONT = "pareto.parquet"              # the Pareto front's rows
PLOTS = "plots"                       # PNG and HTML plots, FRONT_TEXT, the method table's plot
FRONT_TEXT = "front.txt"              # in PLOTS: the front as `weightmom pareto` prints it
FRONT_PNG = "pareto_front.png"        # in PLOTS
FRONT_HTML = "pareto_front.html"      # in PLOTS
IMPORTANCES_HTML = "param_importances.html"   # in PLOTS: the study's parameter importances
PARALLEL_HTML = "parallel_coordinates.html"   # in PLOTS: the study's parallel coordinates
OPTUNA_DB = "optuna.db"               # the Optuna study
MLFLOW_DB = "mlflow.db"               # the default tracking store (no --tracking-uri)
MLFLOW_ARTIFACTS = "mlartifacts"      # its artifacts
MLFLOW_PENDING = "mlflow_pending.jsonl"   # MLflow writes held back while the server is unreachable
RAY_SESSION = "ray_session.json"      # the local Ray this sweep started, for cleaning up after a kill
RAY_STORAGE = "ray"                   # trial checkpoints, unless storage_path points elsewhere
METHOD_TABLE_MD = "table.md"          # `weightmom table`
METHOD_TABLE = "table.parquet"        # `weightmom table`
METHOD_PLOT = "accuracy_vs_density.png"   # in PLOTS, by `weightmom table`
BEST_CONFIG = "best.yaml"             # where the printed next steps suggest `best --out`
BEST_MODEL = "best.pt"                # and `best --export`
SET_ASIDE_PREFIX = "partial-start-"   # a killed start-up's files, moved aside (records/partial.py)

