"""A sweep resumes whatever state a killed driver left: a torn Ray snapshot, a short count, stray processes.

Real everything: the CLI in a subprocess, a local Ray, the MLflow server fixture, the Optuna study
in the sweep folder. The torn snapshot is made the same way every time: SIGKILL the driver's
process group after its first finished trial, then truncate the newest experiment_state-*.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps.execution import ray_session
from sweeps.execution.ray_session import psutil
from sweeps.records.results import recorded_name, sweep_rows
from sweeps.records.state import load_state
from sweeps.search.searcher import RAY_TRIAL_ID
from tests import warm_driver
from tests.sweep_helpers import child_runs, rows_so_far, run_until, wait_for, write_space

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
# Every epoch checkpoints, so a trial in flight at the kill has a checkpoint to continue from.
ENV = {**os.environ, "WEIGHTMOM_CHECKPOINT_EVERY_S": "0", "PYTHONPATH": str(REPO)}


def sweep_command(space: Path, out: Path, uri: str) -> list[str]:
    return [sys.executable, "-m", "weightmom_sweeps", "sweep", str(space), "--out", str(out), "--tracking-uri", uri,
            "--verbose", "0"]


def epoch_in(state_file: Path) -> int | None:
    """The epoch a trial's saved training state is at; None for a file the kill left half-written."""
    try:
        return torch.load(state_file, weights_only=True)["epoch"]
    except (EOFError, RuntimeError):
        return None


def study_of(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=load_state(out).optuna_storage)


def test_torn_snapshot_resume_settles_every_trial_once(tmp_path: Path, mlflow_server) -> None:
    out, trials = tmp_path / "sweep", 6
    space = write_space(tmp_path, "torn", trials=trials)
    command = sweep_command(space, out, mlflow_server.uri)
    run_until(command, tmp_path / "first.log", lambda: rows_so_far(out) >= 1, signal.SIGKILL, group=True, env=ENV)
    snapshots = sorted((out / "ray").glob("*/experiment_state-*.json"))
    torn_folder = snapshots[-1].parent
    snapshots[-1].write_bytes(b"")   # the torn write: what a kill during Ray's in-place write leaves
    before = study_of(out, "torn").trials
    running = {t.number: t for t in before if t.state.name == "RUNNING"}
    # Finished: a row, or (killed between Ray's tell and the row) a finished Optuna trial.
    finished = len({r["trial_id"] for r in sweep_rows(out)}
                   | {t.user_attrs[RAY_TRIAL_ID] for t in before if t.state.is_finished()})
    assert 1 <= finished < trials and running
    client = MlflowClient(mlflow_server.uri)
    logged = {r.data.tags["trial_id"]: max((m.step for m in client.get_metric_history(r.info.run_id, "test_accuracy")),
                                           default=0) for r in child_runs(client, out)}
    # Each interrupted trial continues from its newest checkpoint whose epochs all reached MLflow.
    expected_start = {}
    for trial in running.values():
        trial_id = trial.user_attrs.get(RAY_TRIAL_ID)
        if trial_id is None:   # killed between Optuna's ask and the id: it never ran, so it starts afresh
            continue
        epochs = [epoch_in(p) for p in torn_folder.glob(f"run_trial_{trial_id}_*/checkpoint_*/state.pt")]
        expected_start[trial_id] = max((e for e in epochs if e is not None and e <= logged.get(trial_id, 0)),
                                       default=0)

    resumed = warm_driver.run_cli([*command, "--resume"], tmp_path, "resumed", ENV)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    line = (f"snapshot unreadable; recovered {finished} finished, {len(running)} re-queued, "
            f"{trials - finished - len(running)} to sample")
    assert line in resumed.stderr, resumed.stderr[-3000:]
    assert f"{trials} of {trials} trials settled" in resumed.stdout

    rows = sweep_rows(out)
    assert len(rows) == trials and len({r["trial_id"] for r in rows}) == trials
    assert all(r["state"] in ("COMPLETE", "PRUNED", "FAILED") for r in rows)
    configs = {(r["config.method"], r["config.target_density"], r["config.lr"]) for r in rows}
    assert len(configs) == trials  # no config twice
    # The interrupted trials ran again with their own params, under their own id, from their checkpoint.
    study = study_of(out, "torn")
    assert len(study.trials) == trials and not [t for t in study.trials if t.state.name == "RUNNING"]
    for number, before in running.items():
        after = study.trials[number]
        assert after.params == before.params and after.state.name in ("COMPLETE", "PRUNED")
        original = before.user_attrs.get(RAY_TRIAL_ID)
        row = next(r for r in rows if r["trial_id"] == (original or after.user_attrs[RAY_TRIAL_ID]))
        assert all(row[f"config.{recorded_name(k)}"] == v for k, v in before.params.items())
        assert row["resumed_from_epoch"] == expected_start.get(original, 0)
    children = child_runs(client, out)
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(r["trial_id"] for r in rows)
    assert not [r for r in children if r.info.status == "RUNNING"]
    for run in children:   # re-run epochs were not logged twice
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")]
        assert steps == list(range(1, len(steps) + 1))
    # Ray's torn folder is kept as it was; the sweep went on in a new one, named in sweep.json.
    assert snapshots[-1].exists() and snapshots[-1].stat().st_size == 0
    assert load_state(out).ray_experiment == f"{torn_folder.name}-r1"


def test_restored_searcher_reruns_the_optuna_trials_its_snapshot_missed(tmp_path: Path) -> None:
    """Ray's snapshot can be older than the study (it is written every 2 s): the trials started since
    run again under their own id, and the budget is not spent on new samples in their place."""
    import ray.cloudpickle

    from sweeps.records.requeue import REQUEUED
    from sweeps.search.searcher import BudgetAwareOptunaSearch
    from sweeps.space.search_space import load_space

    space = load_space(write_space(tmp_path, "stale", trials=4))   # 4 start points
    searcher = BudgetAwareOptunaSearch(
        space=space.define_by_run, metric=space.metrics, mode=space.modes, study_name="stale",
        points_to_evaluate=[dict(p) for p in space.start_points], budget=space.epochs,
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    as_created = ray.cloudpickle.dumps(searcher)   # tuner.pkl: the searcher as the Tuner got it
    first, second = searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"epoch": 6, "test_accuracy": 0.9, "density": 0.1})
    searcher.save(str(tmp_path / "searcher-state.pkl"))   # the snapshot
    orphan = searcher.suggest("c")                         # started after it; then the driver died

    restored = ray.cloudpickle.loads(as_created)            # what Tuner.restore does
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert restored.suggest("d") == {**orphan, REQUEUED: {"trial_id": "c"}}
    fourth = restored.suggest("e")
    assert REQUEUED not in fourth
    assert [{k: v for k, v in c.items() if k in space.params} for c in (first, second, orphan, fourth)] == [
        dict(p) for p in space.start_points]   # each start point once, none lost, none twice
    study = optuna.load_study(study_name="stale", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 4 and study.trials[2].user_attrs[RAY_TRIAL_ID] == "c"


def test_a_trial_that_finished_after_the_snapshot_is_not_sampled_again(tmp_path: Path) -> None:
    """Ray's restored experiment knows only the trials of its snapshot; one that started and finished since
    (its row is in trials.parquet) still counts: the budget ends the search, no extra trial is sampled."""
    import ray.cloudpickle
    from ray.tune.search import Searcher

    from sweeps.search.searcher import BudgetAwareOptunaSearch
    from sweeps.space.search_space import load_space

    space = load_space(write_space(tmp_path, "quick-finish", trials=4))
    searcher = BudgetAwareOptunaSearch(
        space=space.define_by_run, metric=space.metrics, mode=space.modes, study_name="quick-finish",
        points_to_evaluate=[dict(p) for p in space.start_points], budget=space.epochs, trials=space.trials,
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    as_created = ray.cloudpickle.dumps(searcher)
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"epoch": 6, "val_accuracy": 0.9, "density": 0.1})
    searcher.save(str(tmp_path / "searcher-state.pkl"))   # the snapshot: Ray knows a and b
    searcher.suggest("c")                                   # started and finished after it
    searcher.on_trial_complete("c", {"epoch": 6, "val_accuracy": 0.8, "density": 0.2})

    restored = ray.cloudpickle.loads(as_created)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert isinstance(restored.suggest("d"), dict)          # the fourth trial of four
    assert restored.suggest("e") == Searcher.FINISHED       # not a fifth in c's place
    study = optuna.load_study(study_name="quick-finish", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 4


def test_interrupted_sweep_exits_non_zero_with_the_count_and_resume_completes_it(tmp_path: Path,
                                                                                 mlflow_server) -> None:
    out, trials = tmp_path / "sweep", 4
    space = write_space(tmp_path, "short", trials=trials, early_stopping=False)
    command = sweep_command(space, out, mlflow_server.uri)
    # Ctrl-C: Ray stops the trials, saves its snapshot, and returns from fit with the budget unspent.
    run_until(command, tmp_path / "first.log", lambda: rows_so_far(out) >= 1, signal.SIGINT, group=False, env=ENV)
    log = (tmp_path / "first.log").read_text()
    settled = rows_so_far(out)
    assert settled < trials
    assert f"{settled} of {trials} trials settled" in log, log[-3000:]
    assert f"only {settled} of {trials} trials settled, {trials - settled} missing" in log and "--resume" in log
    client = MlflowClient(mlflow_server.uri)
    assert client.get_run(load_state(out).parent_run_id).info.status == "KILLED"

    resumed = warm_driver.run_cli([*command, "--resume"], tmp_path, "resumed", ENV)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "snapshot unreadable" not in resumed.stderr   # a readable snapshot goes to Ray as before
    assert f"{trials} of {trials} trials settled: {trials} complete, 0 pruned, 0 failed" in resumed.stdout
    rows = sweep_rows(out)
    assert len({r["trial_id"] for r in rows}) == trials
    assert not [t for t in study_of(out, "short").trials if t.state.name != "COMPLETE"]
    children = child_runs(client, out)
    assert len(children) == trials and all(r.info.status == "FINISHED" for r in children)
    assert client.get_run(load_state(out).parent_run_id).info.status == "FINISHED"


LOCAL_RAY = """
import sys, time
from pathlib import Path
import ray
from sweeps.execution import ray_session
context = ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
ray_session.record(Path(sys.argv[1]), context.address_info["session_dir"])
print("ready", flush=True)
time.sleep(600)
"""


def name_or_none(process: psutil.Process) -> str | None:
    try:
        return process.name()
    except psutil.Error:   # ended since it was listed
        return None


def agents_of(session_dir: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["pid"]) if ray_session._holds_files_in(p, session_dir.rstrip("/") + "/")]


def test_resume_ends_only_the_killed_drivers_ray_leftovers(tmp_path: Path, local_ray) -> None:
    import json

    driver = subprocess.Popen([sys.executable, "-c", LOCAL_RAY, str(tmp_path)], stdout=subprocess.PIPE, env=ENV,
                              start_new_session=True)
    try:
        assert driver.stdout.readline().strip() == b"ready"
        session = json.loads((tmp_path / ray_session.SESSION_FILE).read_text())["session_dir"]
        assert ray_session.end_leftovers(tmp_path) == []   # its driver is alive: nothing is left over
        agents = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}
        wait_for(lambda: {name_or_none(p) for p in agents_of(session)} >= agents, 60, "the session's agents to start")
        driver.kill()   # the driver alone, as a crash or `kill -9` would
        driver.wait(timeout=30)
        # Ray's GCS and raylet follow it; the two agents stay, orphaned.
        wait_for(lambda: not {name_or_none(p) for p in agents_of(session)} & {"gcs_server", "raylet"}, 60,
                 "the killed session's GCS and raylet to end")
        left = agents_of(session)
        names = {p.pid: name_or_none(p) for p in left}
        orphans = {pid for pid, name in names.items() if name in agents}
        assert len(orphans) >= 2, names

        ended = ray_session.end_leftovers(tmp_path)
        # Every orphan ended; nothing outside the session touched. Another of its processes may have ended
        # on its own since `left` was read (a CI run saw one), so `ended` may be smaller than `left`.
        assert orphans <= set(ended) <= set(names), (ended, names)
        assert not [p for p in left if ray_session._running(p)]
        # This test's own Ray (another session on the same machine) was not touched.
        assert local_ray.get(local_ray.remote(lambda: 42).remote()) == 42
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)


def test_a_row_rebuilt_from_the_study_has_the_recorders_columns(tmp_path: Path) -> None:
    """A finished trial whose row the killed driver never wrote is rebuilt from the study with the same
    config.* names the recorder uses (the density asked for is config.target_density)."""
    from sweeps.bookkeeping.trial_rows import config_columns
    from sweeps.execution.recovery import row_from_study
    from sweeps.space.search_space import load_space

    space = load_space(write_space(tmp_path, "rebuilt", trials=4))
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    constants = space.define_by_run(trial)
    trial.set_user_attr(RAY_TRIAL_ID, "abc")
    study.tell(trial, [0.9, 0.1])
    row = row_from_study(space, study.trials[0])
    expected = config_columns({**constants, **study.trials[0].params})
    assert {k: v for k, v in row.items() if k.startswith("config.")} == expected
    assert "config.target_density" in row and "config.density" not in row
    assert (row["trial_id"], row["state"], row["val_accuracy"]) == ("abc", "COMPLETE", 0.9)
