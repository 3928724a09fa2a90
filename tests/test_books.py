"""The sweep's books: one driver per folder, a killed start-up that starts again, rows that are rebuilt.

Real drivers in subprocesses (the CLI), a local Ray, the MLflow server fixture or the sqlite in the folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sweeps.records.folder import MLFLOW_DB, SET_ASIDE_PREFIX, TRIALS
from sweeps.records.lock import LOCK_FILE, SweepLock
from sweeps.records.results import ResultsTable, journal_path, sweep_rows, write_rows
from sweeps.records.state import SWEEP_STATE_FILE
from tests import warm_driver
from tests.test_sweeps import write_space
from tests.test_torn_resume import ENV, rows_so_far, sweep_command
from weightmom.errors import UsageError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = {"trials": 3, "concurrency": 1, "early_stopping": {"enabled": False},
        "fixed": {"epochs": 2, "pruner": {"prune_end": 1}}}


def tiny_space(folder: Path, name: str, trials: int = 3, concurrency: int = 1) -> Path:
    return write_space(folder, name, **{**TINY, "trials": trials, "concurrency": concurrency})


def wait_for(condition, driver: subprocess.Popen, what: str, timeout: float = 240, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=ENV)


def stop(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)


def test_a_held_folder_is_refused_with_its_holder(tmp_path: Path) -> None:
    with SweepLock(tmp_path):
        with pytest.raises(UsageError, match=rf"in use by another sweep driver \(pid {os.getpid()} on "):
            SweepLock(tmp_path).acquire()
    with SweepLock(tmp_path) as lock:   # released on exit: a new driver takes it, nobody to take over from
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_dead_holder_is_taken_over_with_a_line(tmp_path: Path, capsys) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": os.uname().nodename, "since": "then"}))
    with SweepLock(tmp_path):
        assert "took over the lock of a driver that is gone (pid 999999" in capsys.readouterr().err


@pytest.mark.slow
def test_a_held_folder_is_left_as_it_is(tmp_path: Path) -> None:
    """The refused driver writes nothing: the folder holds what it held (here, the lock alone)."""
    out = tmp_path / "sweep"
    command = sweep_command(tiny_space(tmp_path, "refused"), out, "unused")[:-4]
    with SweepLock(out):
        for extra in ([], ["--resume"]):
            refused = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120, env=ENV)
            assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert [p.name for p in out.iterdir()] == [LOCK_FILE]


@pytest.mark.slow
def test_a_start_up_killed_in_mlflow_s_migration_starts_again(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    space = tiny_space(tmp_path, "startup", trials=1)
    command = sweep_command(space, out, "unused")[:-4] + ["--verbose", "0"]   # the sqlite MLflow in the folder
    first = start(command, tmp_path / "first.log")
    try:
        wait_for(lambda: (out / MLFLOW_DB).exists(), first, MLFLOW_DB, step=0.01)
    finally:
        stop(first)
    assert not (out / SWEEP_STATE_FILE).exists(), "killed too late to test a start-up"
    again = warm_driver.run_cli(command, tmp_path, "again", ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "held the partial files of a sweep start that was interrupted" in again.stderr
    assert [p.name for p in out.glob(f"{SET_ASIDE_PREFIX}*/{MLFLOW_DB}")] == [MLFLOW_DB]
    assert rows_so_far(out) == 1


@pytest.mark.slow
def test_rows_lost_from_trials_parquet_are_rebuilt_on_resume(tmp_path: Path, mlflow_server) -> None:
    """The stuck folder: fewer rows than finished trials, the budget spent. --resume settles it."""
    out, trials = tmp_path / "sweep", 3
    command = sweep_command(tiny_space(tmp_path, "stuck", trials), out, mlflow_server.uri)
    done = warm_driver.run_cli(command, tmp_path, "first", ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = sweep_rows(out)
    write_rows(out / TRIALS, rows[:1])   # what two drivers rewriting the table left
    resumed = warm_driver.run_cli([*command, "--resume"], tmp_path, "resumed", ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "books reconciled: 2 finished trials' rows rebuilt" in resumed.stderr
    after = {r["trial_id"]: r for r in sweep_rows(out)}
    assert after.keys() == {r["trial_id"] for r in rows}
    for row in rows[1:]:   # the rebuilt rows: the study's config and objectives, MLflow's run and metrics
        rebuilt = after[row["trial_id"]]
        assert rebuilt["mlflow_run_id"] == row["mlflow_run_id"] and rebuilt["state"] == row["state"]
        assert rebuilt["config.lr"] == row["config.lr"] and rebuilt["test_accuracy"] == row["test_accuracy"]
    again = warm_driver.run_cli([*command, "--resume"], tmp_path, "again", ENV)
    assert again.returncode == 0 and f"{trials} of {trials} trials settled" in again.stdout


def test_a_batched_table_loses_no_row_to_a_kill(tmp_path: Path) -> None:
    """Rows between two rewrites live in the journal; a new table (the resumed driver) replays them."""
    path = tmp_path / TRIALS
    table = ResultsTable(path, batched=True)
    for index in range(5):
        table._write_s = 0.0 if index == 0 else 3600.0   # as if the last rewrite was slow: rows wait in the journal
        table.upsert({"trial_id": f"t{index}", "state": "COMPLETE", "test_accuracy": index / 10})
    assert rows_so_far(tmp_path) == 1   # the first row was written at once
    with open(journal_path(path), "a") as journal:
        journal.write('{"trial_id": "torn", "sta')   # a kill mid-append
    resumed = ResultsTable(path, batched=True)
    assert [r["trial_id"] for r in resumed.rows()] == [f"t{i}" for i in range(5)]
    resumed.flush()
    assert rows_so_far(tmp_path) == 5 and not journal_path(path).exists()


def test_an_unreadable_table_is_set_aside_and_a_readable_one_left_alone(tmp_path: Path) -> None:
    from sweeps.records.partial import set_aside_unreadable_table

    assert set_aside_unreadable_table(tmp_path) is None   # no table yet: nothing to do
    write_rows(tmp_path / TRIALS, [{"trial_id": "a", "state": "COMPLETE"}])
    assert set_aside_unreadable_table(tmp_path) is None and rows_so_far(tmp_path) == 1
    data = (tmp_path / TRIALS).read_bytes()
    (tmp_path / TRIALS).write_bytes(data[: len(data) // 2])   # a torn or damaged file
    line = set_aside_unreadable_table(tmp_path)
    assert "not a readable Parquet file" in line and "rebuilt from the journal, the Optuna study and MLflow" in line
    assert not (tmp_path / TRIALS).exists()
    [aside] = tmp_path.glob("trials.parquet.unreadable-*")
    assert aside.read_bytes() == data[: len(data) // 2]   # kept as it was, for whoever wants to look
