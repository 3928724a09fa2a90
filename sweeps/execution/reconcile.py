"""The sweep's books, made to agree: trials.parquet against the Optuna study and the MLflow child runs.

Each record is written by its own step, so a driver killed between two steps, or two drivers on one
folder (before the sweep lock), leave them disagreeing: a finished trial in Optuna and MLflow with no
row in trials.parquet. Reconciling rebuilds such a row (config and objectives from the study, the
last epoch's metrics and the run id from MLflow). It runs on every `--resume` and at the end of every
sweep; what it cannot rebuild is left to recovery (re-queued) or reported in one line.

A chain's step reaches the study (the searcher) before its row reaches steps.parquet (the recorder, at the
step's checkpoint): a step the study holds without a row gets one, from its trial's Ray record (result.json:
the step's metrics and checkpoint) or, where that is out of reach, from the study alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from sweeps.bookkeeping.trial_rows import chain_step_row, config_columns, step_id
from sweeps.execution.storage import is_remote_uri, sweep_experiments
from sweeps.records.folder import MLFLOW_PENDING, STEPS, TRIALS
from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import ResultsTable
from sweeps.search.searcher import CHAIN_OF, CHAIN_STEP, RAY_TRIAL_ID
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
    steps: list[str] = field(default_factory=list)   # chain steps' rows rebuilt

    def message(self) -> str | None:
        if not (self.rebuilt or self.told or self.steps):
            return None
        return (f"books reconciled: {len(self.rebuilt)} finished trials' rows rebuilt from the Optuna study and "
                f"MLflow, {len(self.told)} Optuna trials settled from their rows"
                + (f", {len(self.steps)} chain steps' rows rebuilt" if self.steps else ""))


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
    run_ids = {trial_id: row.get("mlflow_run_id") for trial_id, row in rows.items()}   # a chain's run holds its steps
    steps = rebuild_steps(space, state, out, study, run_ids) if space.chain_plan else []
    return Books(rebuilt, told, running, steps)


def rebuild_steps(space: SearchSpace, state: SweepState, out: Path, study: optuna.Study,
                  run_ids: dict[str, str | None]) -> list[str]:
    """Rows for the chain steps the study holds and steps.parquet lacks (see the module's docstring)."""
    table = ResultsTable(out / STEPS)
    have = {r["trial_id"] for r in table.rows()}
    rebuilt = []
    for trial in study.get_trials(deepcopy=False):
        if CHAIN_OF not in trial.user_attrs:
            continue
        parent, step = trial.user_attrs[CHAIN_OF], int(trial.user_attrs[CHAIN_STEP])
        if step_id(parent, step) in have:
            continue
        table.upsert(step_row_from_study(space, trial, ray_step(state, parent, step), run_ids.get(parent)))
        rebuilt.append(step_id(parent, step))
    return rebuilt


def step_row_from_study(space: SearchSpace, trial: optuna.trial.FrozenTrial, recorded: dict,
                        run_id: str | None) -> dict:
    """A chain step's row as the recorder would have written it, from what Ray recorded of the step (`recorded`:
    its result and checkpoint path; {} when unknown, and the study's values stand in)."""
    parent, step = trial.user_attrs[CHAIN_OF], int(trial.user_attrs[CHAIN_STEP])
    config = {**space.define_by_run(optuna.trial.FixedTrial(trial.params)), **trial.params}
    result = {**dict(zip(space.metrics, trial.values)), "epoch": space.chain_plan.step_end(step), **recorded,
              "chain_step": step}
    return chain_step_row(parent, config, result, recorded.get("checkpoint_path"), run_id)


def ray_step(state: SweepState, trial_id: str, step: int) -> dict:
    """What the trial's Ray record (result.json, local storage only) holds of the chain step's end: its metrics
    and, when that result came with one, its checkpoint's path. {} when there is no such record."""
    if is_remote_uri(state.storage):
        return {}
    root = Path(state.storage)
    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    records = [r for name in sweep_experiments(names, state.ray_experiment)
               for r in sorted((root / name).glob(f"*_{trial_id}_*/result.json"))]
    for record in records:
        for line in record.read_text().splitlines():
            try:
                result = json.loads(line)
            except ValueError:   # a line cut by the kill
                continue
            if result.get("chain_step") == step and result.get("step_end"):
                checkpoint = result.get("checkpoint_dir_name")
                found = record.parent / checkpoint if checkpoint else None
                return {**result, "checkpoint_path": str(found) if found and found.is_dir() else None}
    return {}


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
