"""Chaos: seeded scenarios that break a running sweep the ways a real one breaks, then settle it.

Each scenario draws, from its seed, one disruption and the moment it strikes: the driver SIGKILLed,
a second driver on the same folder, a torn Ray snapshot, the MLflow server down for a while, a
corrupted trials.parquet, or a kill during start-up (before sweep.json exists). Then at most two
`--resume`s (a fresh start for a folder that holds no sweep yet) must settle the trial budget:
every trial counted exactly once in trials.parquet, the Optuna study and the MLflow child runs, and
no run left RUNNING. Real drivers in subprocesses, each with its own local Ray.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweeps.execution.reconcile import ORPHANED
from sweeps.records.lock import LOCK_FILE
from sweeps.records.results import ResultsTable, read_table
from sweeps.records.state import SWEEP_STATE_FILE, load_state
from sweeps.search.searcher import RAY_TRIAL_ID
from tests.conftest import MlflowServer
from tests.sweep_helpers import driver, wait_for, write_space
from tests.test_torn_resume import ENV, sweep_command

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SCENARIOS = 20
TRIALS = 4
KINDS = ("kill", "second_driver", "torn_snapshot", "mlflow_outage", "corrupt_table", "startup_kill")
# Where a start-up kill strikes: the files a driver makes, in the order it makes them, before sweep.json.
STARTUP_FILES = (LOCK_FILE, "mlflow.db", "space.yaml")


@dataclass(frozen=True)
class Scenario:
    seed: int
    kind: str
    rows: int            # the disruption strikes once this many trials have rows (0: once sweep.json exists)
    startup_file: str    # startup_kill: the file whose appearance triggers the kill
    resume_second: bool  # second_driver: the intruder asks for --resume (else a fresh start)
    cut: float           # torn_snapshot / corrupt_table: the fraction of the file that survives

    @classmethod
    def draw(cls, seed: int) -> Scenario:
        rng = random.Random(seed)
        kind = KINDS[seed % len(KINDS)]   # every kind at least three times in 20
        return cls(seed, kind, rng.randrange(TRIALS - 1), rng.choice(STARTUP_FILES), rng.random() < 0.5,
                   rng.choice((0.0, rng.random())))


def rows_now(out: Path) -> int:
    """Rows in trials.parquet and its journal (the table a resumed driver would load)."""
    try:
        return len(ResultsTable(out / "trials.parquet"))
    except Exception:   # noqa: BLE001 - a reader racing a rewrite; the next poll reads it
        return 0


def moment(scenario: Scenario, out: Path) -> Callable[[], bool]:
    if scenario.rows == 0:
        return lambda: (out / SWEEP_STATE_FILE).exists()
    return lambda: rows_now(out) >= scenario.rows


def run(command: list[str], log: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
    log.write_text(done.stdout + done.stderr)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def killed_at(scenario: Scenario, command: list[str], out: Path, log: Path) -> None:
    """Start the driver and SIGKILL its process group (driver and its Ray) at the scenario's moment."""
    with driver(command, log, ENV) as process:
        condition = moment(scenario, out)
        wait_for(lambda: condition() or process.poll() is not None, 300, "the moment to kill the driver")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def cut_file(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] + (b"\x00garbage" if keep else b""))


# -- the disruptions: each returns the command that continues the sweep (--resume, or a fresh start) ----

def kill(scenario, command, out, tmp, uri):
    killed_at(scenario, command, out, tmp / "first.log")
    return [*command, "--resume"]


def torn_snapshot(scenario, command, out, tmp, uri):
    killed_at(scenario, command, out, tmp / "first.log")
    snapshots = sorted((out / "ray").glob("*/experiment_state-*.json"))
    if snapshots:   # killed before Ray's first snapshot: nothing to tear, a plain kill
        cut_file(snapshots[-1], scenario.cut)
    return [*command, "--resume"]


def corrupt_table(scenario, command, out, tmp, uri):
    killed_at(scenario, command, out, tmp / "first.log")
    table = out / "trials.parquet"
    if table.exists():
        cut_file(table, scenario.cut)
    else:
        table.write_bytes(b"PAR1 not a table")
    return [*command, "--resume"]


def startup_kill(scenario, command, out, tmp, uri):
    with driver(command, tmp / "first.log", ENV) as process:
        target = out / scenario.startup_file
        wait_for(lambda: target.exists() or process.poll() is not None, 300, f"{target.name}")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    return [*command, "--resume"] if (out / SWEEP_STATE_FILE).exists() else command


def second_driver(scenario, command, out, tmp, uri):
    with driver(command, tmp / "first.log", ENV) as first:
        wait_for(moment(scenario, out), 300, "the moment for a second driver", lambda: first.poll() is None)
        intruder = run([*command, *(["--resume"] if scenario.resume_second else [])], tmp / "second.log")
        lines = intruder.stderr.strip().splitlines()
        assert intruder.returncode == 2 and len(lines) == 1, intruder.stderr[-3000:]
        assert f"in use by another sweep driver (pid {first.pid} on " in lines[0]
        assert first.wait(timeout=600) == 0, (tmp / "first.log").read_text()[-3000:]
    return None


def mlflow_outage(scenario, command, out, tmp, uri):
    server = uri   # this scenario's own server: stopping it touches no other test
    with driver(command, tmp / "first.log", ENV) as first:
        wait_for(moment(scenario, out), 300, "the moment to stop MLflow", lambda: first.poll() is None)
        rows = rows_now(out)
        server.stop()
        try:   # down until the driver has had to hold something back, or has ended
            wait_for(lambda: held_back(out) or rows_now(out) > rows or first.poll() is not None, 300,
                     "a write held back while MLflow is down")
        finally:
            server.start()
        code = first.wait(timeout=600)
    return None if code == 0 else [*command, "--resume"]


def held_back(out: Path) -> bool:
    pending = out / "mlflow_pending.jsonl"
    return pending.exists() and bool(pending.read_text().strip())


DISRUPT = {"kill": kill, "second_driver": second_driver, "torn_snapshot": torn_snapshot,
           "mlflow_outage": mlflow_outage, "corrupt_table": corrupt_table, "startup_kill": startup_kill}


# -- the books, settled ------------------------------------------------------------------------

def settle(again: list[str] | None, out: Path, tmp: Path) -> None:
    """At most two runs of `again` (a --resume, or a fresh start) settle the budget."""
    for attempt in range(2):
        if again is None:
            return
        done = run(again, tmp / f"again-{attempt}.log")
        if done.returncode == 0:
            assert f"{TRIALS} of {TRIALS} trials settled" in done.stdout, done.stdout[-3000:]
            return
        assert done.returncode == 1, done.stderr[-3000:]   # short of the budget: one more --resume
        again = [*again, "--resume"] if "--resume" not in again else again
    pytest.fail(f"not settled after two runs: {(tmp / 'again-1.log').read_text()[-3000:]}")


def assert_books(out: Path, uri: str) -> None:
    rows = read_table(out / "trials.parquet")
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == TRIALS and len(set(ids)) == TRIALS, Counter(ids).most_common(3)
    assert all(r["state"] in ("COMPLETE", "PRUNED", "FAILED") for r in rows)
    state = load_state(out)
    study = optuna.load_study(study_name=state.space, storage=state.optuna_storage)
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    counted = [t.user_attrs[RAY_TRIAL_ID] for t in study.trials
               if t.state.is_finished() and not t.user_attrs.get(ORPHANED)]
    assert sorted(counted) == sorted(ids)
    client = MlflowClient(uri)
    runs = client.search_runs([state.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(ids)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"
    assert not (out / "trials.journal.jsonl").exists()


@pytest.mark.parametrize("seed", range(SCENARIOS))
def test_a_broken_sweep_settles_every_trial_once(seed: int, tmp_path: Path, mlflow_server) -> None:
    scenario = Scenario.draw(seed)
    out = tmp_path / "sweep"
    space = write_space(tmp_path, f"chaos{seed}", trials=TRIALS,
                        early_stopping={"enabled": True, "grace_period": 1, "reduction_factor": 2},
                        fixed={"epochs": 3, "pruner": {"prune_end": 1}},
                        start_points=[{"method": "weightmom", "density": 0.1, "lr": 0.05},
                                      {"method": "gmp", "density": 0.05, "lr": 0.0001}])   # the rest sampled
    own = MlflowServer(tmp_path) if scenario.kind == "mlflow_outage" else None
    if own:
        own.start()
    try:
        # A kill during start-up is about the sqlite store a sweep makes in its folder; the others use a server.
        uri = None if scenario.kind == "startup_kill" else (own or mlflow_server).uri
        command = sweep_command(space, out, uri or "unused")
        command = command[:-4] + command[-2:] if uri is None else command   # no --tracking-uri: sqlite in the folder
        again = DISRUPT[scenario.kind](scenario, command, out, tmp_path, own or uri)
        settle(again, out, tmp_path)
        assert_books(out, uri or f"sqlite:///{out / 'mlflow.db'}")
    finally:
        if own:
            own.stop()
