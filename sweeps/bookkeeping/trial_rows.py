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
    last = trial.last_result or {}
    return {
        "trial_id": trial_id, "state": state,
        **config_columns(trial_params(trial.config)),
        **{k: last.get(k) for k in reported_metrics()},
        "epochs": last.get("epoch"), "train_seconds": last.get("time_total_s"),
        **{k: last.get(k) for k in PLACEMENT},
        "mlflow_run_id": run_id, "checkpoint_path": trial.checkpoint.path if trial.checkpoint else None,
        "error": error, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
