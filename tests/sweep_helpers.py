"""Helpers the sweep tests share: a small digits space, a sweep's child runs and rows, waiting on a
condition, and a driver process that is stopped when a condition holds and never outlives the test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from mlflow.tracking import MlflowClient

from sweeps.records.folder import TRIALS
from sweeps.records.state import load_state


def write_space(folder: Path, name: str, trials: int, **overrides) -> Path:
    """A digits space small enough for 2 cores: 6 epochs, pruning done by epoch 3, ASHA at epoch 3.

    The start points include hopeless learning rates, so ASHA has trials to stop early.
    """
    space = {
        "name": name, "trials": trials, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
        "early_stopping": {"enabled": True, "grace_period": 3, "reduction_factor": 2},
        "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 6, "batch_size": 128, "device": "cpu",
                  "pruner": {"prune_end": 3}},
        "params": {"method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
                   "density": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
                   "lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True}},
        "start_points": [{"method": "weightmom", "density": 0.1, "lr": 0.05},
                         {"method": "gmp", "density": 0.05, "lr": 0.0001},
                         {"method": "gmp", "density": 0.2, "lr": 0.05},
                         {"method": "weightmom", "density": 0.03, "lr": 0.0001}],
    }
    for key, value in overrides.items():  # one level of merging: a test changes one param or fixed key
        space[key] = {**space[key], **value} if isinstance(value, dict) and key in ("params", "fixed") else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def child_runs(client: MlflowClient, out: Path) -> list:
    """The sweep's child runs in MLflow."""
    state = load_state(out)
    return client.search_runs([state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")


def child_runs_by_trial(client: MlflowClient, out: Path) -> dict[str, object]:
    """The sweep's child runs by trial id; fails if a trial has two."""
    runs = child_runs(client, out)
    ids = [r.data.tags["trial_id"] for r in runs]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    return {r.data.tags["trial_id"]: r for r in runs}


def rows_so_far(out: Path) -> int:
    path = out / TRIALS
    return pq.read_metadata(path).num_rows if path.exists() else 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `condition` until it holds; fail when `alive()` turns false or the (generous) deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive(), f"ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@contextmanager
def driver(command: list[str], log: Path, env: dict | None = None,
           cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A sweep driver in its own session (a SIGKILL to its group takes it and the Ray it started: a crashed
    laptop). Whatever happens in the block, the driver is gone after it."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                   cwd=cwd)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def run_until(command: list[str], log: Path, condition: Callable[[], bool], stop: signal.Signals, group: bool,
              env: dict | None = None, cwd: Path | None = None) -> None:
    """Start the driver; once `condition()` holds, send `stop` (to its process group) and wait for it to end."""
    with driver(command, log, env, cwd) as process:
        def alive() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            return True

        wait_for(condition, 240, "the condition to stop the driver", alive)
        os.killpg(process.pid, stop) if group else process.send_signal(stop)
        process.wait(timeout=120)
