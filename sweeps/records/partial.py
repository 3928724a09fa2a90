"""A sweep folder left by a driver killed during start-up: its partial files, set aside.

The driver writes sweep.json last in its start-up (after MLflow's sqlite, the parent run, the
Optuna study's file), so a folder without sweep.json holds no sweep, only what a killed start-up
made: a half-migrated mlflow.db makes the next start die in MLflow's own migration ("table
trace_info already exists"). Under the sweep lock no other driver writes here, so these files are
moved into a dated folder beside them (never deleted: they are the user's to look at) and the
start goes on from scratch.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sweeps.records.folder import (
    FRONT,
    MLFLOW_ARTIFACTS,
    MLFLOW_DB,
    MLFLOW_PENDING,
    OPTUNA_DB,
    PLOTS,
    RAY_SESSION,
    RAY_STORAGE,
    SET_ASIDE_PREFIX,
    SPACE_COPY,
    SWEEP_STATE_FILE,
    TRIALS,
    TRIALS_JOURNAL,
)
from sweeps.records.results import read_table
from weightmom.errors import UsageError

# Everything a driver writes in its folder before and after sweep.json (a kill can come at any point),
# sqlite's side files included.
DRIVER_FILES = (MLFLOW_DB, f"{MLFLOW_DB}-journal", f"{MLFLOW_DB}-wal", f"{MLFLOW_DB}-shm", OPTUNA_DB,
                f"{OPTUNA_DB}-journal", MLFLOW_ARTIFACTS, MLFLOW_PENDING, RAY_SESSION, SPACE_COPY, TRIALS,
                TRIALS_JOURNAL, FRONT, PLOTS, RAY_STORAGE)
__all__ = ["DRIVER_FILES", "SET_ASIDE_PREFIX", "set_aside_partial", "set_aside_unreadable_table"]


def set_aside_partial(out: Path) -> str | None:
    """Move a killed start-up's files out of the way; the one line saying so, or None when there were none."""
    if (out / SWEEP_STATE_FILE).exists() or not out.is_dir():
        return None
    found = [out / name for name in DRIVER_FILES if (out / name).exists()]
    if not found:
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = out / f"{SET_ASIDE_PREFIX}{stamp}"
    aside.mkdir()
    for path in found:
        path.rename(aside / path.name)
    return (f"{out} held the partial files of a sweep start that was interrupted before {SWEEP_STATE_FILE} "
            f"({', '.join(p.name for p in found)}); moved to {aside.name}/, starting afresh")


def set_aside_unreadable_table(out: Path) -> str | None:
    """A trials.parquet that no longer reads (a disk fault, a hand edit) is moved aside on --resume.

    Every row it held is still in the other records: the journal, the Optuna study and the MLflow runs,
    from which reconciling rebuilds it. Returns the one line saying so, or None when the table reads.
    """
    table = out / TRIALS
    if not table.is_file():
        return None
    try:
        read_table(table)
        return None
    except (UsageError, ValueError) as exc:   # read_table's one line, or a JSON column that no longer decodes
        why = str(exc) if isinstance(exc, UsageError) else f"{table}: a column no longer decodes ({exc})"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = table.with_name(f"{table.name}.unreadable-{stamp}")
    table.rename(aside)
    return f"{why}; moved to {aside.name}, its rows are rebuilt from the journal, the Optuna study and MLflow"
