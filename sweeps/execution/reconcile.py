"""The sweep's books, made to agree: trials.parquet against the Optuna study and the MLflow child runs.

Each record is written by its own step, so a driver killed between two steps, or two drivers on one
folder (before the sweep lock), leave them disagreeing: a finished trial in Optuna and MLflow with no
row in trials.parquet. Reconciling rebuilds such a row (config and objectives from the study, the
last epoch's metrics and the run id from MLflow). It runs on every `--resume` and at the end of every
sweep; what it cannot rebuild is left to recovery (re-queued) or reported in one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from sweeps.bookkeeping.trial_rows import config_columns
from sweeps.records.folder import MLFLOW_PENDING, TRIALS
from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import ResultsTable
from sweeps.search.searcher import RAY_TRIAL_ID
from weightmom.contract import reported_metrics

if TYPE_CHECKING:
    from sweeps.records.state import SweepState
    from sweeps.space.search_space import SearchSpace

log = logging.getLogger(__name__)

ORPHANED = "orphaned"   # Optuna user attr: a RUNNING trial failed by a settled sweep's close, never a row
SETTLED = {"COMPLETE": ("COMPLETE", "FINISHED"), "PRUNED": ("PRUNED", "KILLED"), "FAILED": ("FAIL", "FAILED")}


@dataclass(frozen=True)
class Books:
    """What reconciling did: rows rebuilt, Optuna trials told, and the RUNNING Optuna trials without a row."""

    rebuilt: list[str]
    told: list[str]
    running: list[optuna.trial.FrozenTrial]

    def message(self) -> str | None:
        if not (self.rebuilt or self.told):
            return None
        return (f"books reconciled: {len(self.rebuilt)} finished trials' rows rebuilt from the Optuna study and "
                f"MLflow, {len(self.told)} Optuna trials settled from their rows")


def load_study(space: SearchSpace, state: SweepState) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=space.name, storage=state.optuna_storage)
    except KeyError:   # stopped before the searcher created the study: nothing ran
        return None


def reconcile(space: SearchSpace, state: SweepState, out: Path, table: ResultsTable | None = None) -> Books:
    """Make the table, the study and MLflow agree (see the module's docstring)."""
    table = table or ResultsTable(out / TRIALS)
    study = load_study(space, state)
    if study is None:
        return Books([], [], [])
    rows = {r["trial_id"]: r for r in table.rows()}
    runs = None
    rebuilt, told, running = [], [], []
    for trial in study.get_trials(deepcopy=False):
        trial_id = trial.user_attrs.get(RAY_TRIAL_ID)
        row = rows.get(trial_id)
        if trial.state == optuna.trial.TrialState.RUNNING and row is None:
            running.append(trial)
        elif trial.state == optuna.trial.TrialState.RUNNING:   # the tell was lost: the row says how it ended
            values = [row[m] for m in space.metrics] if row["state"] == "COMPLETE" else None
            study.tell(trial.number, values, state=optuna.trial.TrialState[SETTLED[row["state"]][0]])
            told.append(trial_id)
        elif trial.state.is_finished() and trial_id is not None and row is None and not trial.user_attrs.get(ORPHANED):
            runs = child_runs(state, out) if runs is None else runs
            new = {**row_from_study(space, trial), **from_run(runs.get(trial_id))}
            rows[trial_id] = new
            table.upsert(new)
            rebuilt.append(trial_id)
    return Books(rebuilt, told, running)


def child_runs(state: SweepState, out: Path) -> dict[str, object]:
    """The sweep's MLflow child runs by trial id ({} when the server cannot be reached)."""
    mlflow = ResilientClient(state.tracking_uri, out / MLFLOW_PENDING)
    runs, token = {}, None
    while True:
        page = mlflow.retry(mlflow.client.search_runs, [state.experiment_id], max_results=1000, page_token=token,
                            filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
        if page is None:
            log.warning("MLflow unreachable: rebuilt rows carry the study's values only")
            return runs
        runs.update({r.data.tags.get("trial_id"): r for r in page})
        token = page.token
        if not token:
            return runs


def from_run(run) -> dict:
    """A rebuilt row's columns that MLflow knows better than the study: the run id and the last epoch's metrics."""
    if run is None:
        return {}
    metrics = run.data.metrics
    return {"mlflow_run_id": run.info.run_id, **{k: metrics[k] for k in reported_metrics() if k in metrics}}


def row_from_study(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> dict:
    """A finished trial's table row as the study knows it: its config, state and objective values."""
    state = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED"}.get(trial.state.name, "FAILED")
    constants = space.define_by_run(optuna.trial.FixedTrial(trial.params))
    values = dict(zip(space.metrics, trial.values)) if state == "COMPLETE" else {}
    return {"trial_id": trial.user_attrs[RAY_TRIAL_ID], "state": state,
            **config_columns({**constants, **trial.params}), **values,
            "error": "the driver stopped before this trial's result was recorded; the row is rebuilt from the study"
            if state == "FAILED" else None}
