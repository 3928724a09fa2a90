"""The sweep's rows in trials.parquet: one per finished trial, built from what Ray knows of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sweeps.records.requeue import trial_params
from sweeps.records.results import ResultsTable, recorded_name
from weightmom.contract import flatten, reported_metrics

# Table columns, not MLflow metrics: where a trial ran, and what its accuracy's chance level is.
PLACEMENT = ("node_id", "cuda_visible_devices", "resumed_from_epoch", "num_classes")


class TrialRows:
    """trials.parquet as the sweep driver keeps it: a trial's row upserted by trial id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._table: ResultsTable | None = None

    # Loaded lazily and left out of pickles: Ray pickles callbacks into the experiment state, and the
    # file, not a snapshot of it, is what a resumed driver must continue.
    @property
    def table(self) -> ResultsTable:
        if self._table is None:
            self._table = ResultsTable(self.path, batched=True)
        return self._table

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_table": None}

    def record(self, trial_id: str, trial, state: str, run_id: str | None, error: str | None) -> None:
        self.table.upsert(trial_row(trial_id, trial, state, run_id, error))

    def record_row(self, row: dict) -> None:
        self.table.upsert(row)

    def set_run_id(self, trial_id: str, run_id: str) -> None:
        """The child run of a trial whose run was created late (the tracking server was down)."""
        row = self.table.row(trial_id)
        self.table.upsert({**row, "mlflow_run_id": run_id})

    def rows(self) -> list[dict]:
        return self.table.rows()

    def flush(self) -> None:
        """Bring trials.parquet up to date with the journal (the sweep's end)."""
        self.table.flush()


def config_columns(config: dict) -> dict:
    """A trial's flat config as the table's config.* columns, under their recorded names."""
    return {f"config.{recorded_name(k)}": v for k, v in flatten(config).items()}


def trial_row(trial_id: str, trial, state: str, run_id: str | None, error: str | None) -> dict:
    """A Ray trial's row: its config as config.* columns, its last metrics, where it ran and how it ended."""
    return _row(trial_id, trial_id, trial_params(trial.config), trial.last_result or {}, state, run_id,
                trial.checkpoint.path if trial.checkpoint else None, error)


def step_row(trial_id: str, trial, result: dict, checkpoint_path: str, run_id: str | None) -> dict:
    """A chain step's row (but the last's, which is the trial's own): a front point with the step's model, and a
    config that trains exactly to it (the chain cut after the step)."""
    return chain_step_row(trial_id, trial_params(trial.config), result, checkpoint_path, run_id)


def chain_step_row(trial_id: str, config: dict, result: dict, checkpoint_path: str | None,
                   run_id: str | None) -> dict:
    """The row of the step `result` ends, of the chain `trial_id` that trains with `config`."""
    step = result["chain_step"]
    config = {**config, "chain": list(config["chain"])[:step]}
    return _row(step_id(trial_id, step), trial_id, config, result, "COMPLETE", run_id, checkpoint_path, None)


def step_id(trial_id: str, step: int) -> str:
    """A chain step's id in the tables: its trial's, and the step."""
    return f"{trial_id}-s{step}"


def _row(row_id: str, trial_id: str, config: dict, result: dict, state: str, run_id: str | None,
         checkpoint_path: str | None, error: str | None) -> dict:
    chain = {"chain_of": trial_id, "chain_step": result["chain_step"]} if "chain_step" in result else {}
    return {
        "trial_id": row_id, "state": state,
        **config_columns(config),
        **{k: result.get(k) for k in reported_metrics()},
        "epochs": result.get("epoch"), "train_seconds": result.get("time_total_s"),
        **{k: result.get(k) for k in PLACEMENT}, **chain,
        "mlflow_run_id": run_id, "checkpoint_path": checkpoint_path,
        "error": error, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
