"""Sweeps on a real multi-node Ray cluster on one machine, and the faults a cluster brings.

`ray.cluster_utils.Cluster` starts a head with no CPUs (so no trial runs there) and two worker
nodes with one fake GPU each: Ray assigns GPU ids and sets CUDA_VISIBLE_DEVICES although the
machine has no GPU; torch sees no CUDA and the digits trials train on the CPU (`device: cpu`).
The cluster is shared by the tests of this module; a test that removes a node adds a fresh one,
so every test starts with two idle workers of 1 CPU and 1 GPU.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
import ray
import ray.cloudpickle
import yaml
from mlflow.tracking import MlflowClient

from sweeps.execution.runner import SweepOptions, run_sweep
from sweeps.records.results import sweep_rows
from sweeps.records.state import load_state
from sweeps.space.search_space import load_space
from tests.sweep_helpers import child_runs_by_trial, rows_so_far, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WORKER = {"num_cpus": 1, "num_gpus": 1}   # one fake GPU per worker node
# A killed node is declared dead after about 4 s instead of Ray's default 15 s (lenient enough
# for a raylet that is merely slow on two busy cores).
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                   "health_check_timeout_ms": 2000, "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        # Checkpoint every epoch. Set before the nodes start: their workers inherit it.
        env.setenv("WEIGHTMOM_CHECKPOINT_EVERY_S", "0")
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_NODE_DEATH})
        try:
            for _ in range(2):
                cluster.add_node(**WORKER)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def write_space(folder: Path, name: str, trials: int, concurrency: int, epochs: int, resources: dict,
                start_points: list[dict] = (), **params) -> Path:
    """A digits/lenet300 space on the CPU, without early stopping (every trial runs all its epochs)."""
    space = {
        "name": name, "trials": trials, "concurrency": concurrency, "resources": resources,
        "early_stopping": False,
        "fixed": {"dataset": "digits", "model": "lenet300", "epochs": epochs, "batch_size": 128,
                  "device": "cpu", "pruner": {"prune_end": max(1, epochs // 2)}},
        "params": {"method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
                   "density": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
                   "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}, **params},
        "start_points": list(start_points),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def sweep(space: Path, out: Path, uri: str, cluster) -> list[dict]:
    """An in-process driver connected to the cluster, disconnected afterwards (the cluster stays)."""
    try:
        return run_sweep(load_space(space), SweepOptions(out=out, tracking_uri=uri, address=cluster.address,
                                                         verbose=0))
    finally:
        ray.shutdown()


def steps(client: MlflowClient, run, metric: str = "test_accuracy") -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, metric)]


def trial_folders(out: Path) -> list[Path]:
    """Ray's trial folders: under OUT/ray (the storage path given to every sweep here), one experiment."""
    return list((out / "ray").glob("*/run_trial_*"))


def checkpoints(out: Path) -> dict[str, int]:
    """Trial id -> the index of its latest checkpoint on storage (-1: none yet)."""
    found = {}
    for folder in trial_folders(out):
        indices = [int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint_(\d+)", p.name))]
        found[folder.name.split("_")[2]] = max(indices, default=-1)
    return found


def snapshot_checkpoints(out: Path) -> dict[str, int]:
    """Running trial id -> the checkpoint index Ray's newest experiment snapshot names for it (-1: none).

    Ray's own record (ray 2.60's experiment_state JSON, each trial's storage context cloudpickled), so a
    test can wait for what a resume will really restore rather than for a file on disk.
    """
    snapshots = sorted((out / "ray").glob("*/experiment_state-*.json"))
    try:
        trials = [json.loads(entry[0]) for entry in json.loads(snapshots[-1].read_text())["trial_data"]]
    except (IndexError, ValueError, OSError):   # none yet, or one being written
        return {}
    return {t["trial_id"]: ray.cloudpickle.loads(bytes.fromhex(t["storage"]["value"])).current_checkpoint_index
            for t in trials if t.get("status") == "RUNNING"}


def results(out: Path, trial_id: str) -> list[dict]:
    """The results Ray's driver logged for a trial (result.json), without a line being written."""
    folder = next(f for f in trial_folders(out) if f.name.startswith(f"run_trial_{trial_id}_"))
    path = folder / "result.json"
    lines = path.read_text().splitlines() if path.exists() else []
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            break
    return parsed


class Background:
    """`sweep` in a thread of this process: the test's thread is free to break things meanwhile."""

    def __init__(self, *args) -> None:
        self.rows, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args) -> None:
        try:
            self.rows = sweep(*args)
        except BaseException as err:  # re-raised in the test's thread by join()
            self.error = err

    def alive(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.thread.is_alive()

    def join(self, timeout: float) -> list[dict]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the sweep did not end in {timeout} s"
        if self.error is not None:
            raise self.error
        return self.rows


def test_fractional_gpus_put_two_trials_on_each_fake_gpu_of_both_workers(tmp_path: Path, cluster,
                                                                         mlflow_server) -> None:
    out = tmp_path / "sweep"
    space = write_space(tmp_path, "packing", trials=4, concurrency=4, epochs=4,
                        resources={"cpu": 0.5, "gpu": 0.5})
    rows = sweep(space, out, mlflow_server.uri, cluster)

    assert len(rows) == 4 and all(r["state"] == "COMPLETE" for r in rows)
    workers = {node.node_id for node in cluster.worker_nodes}
    assert {r["node_id"] for r in rows} == workers   # both workers, never the CPU-less head
    for row in rows:
        assert re.fullmatch(r"\d+", row["cuda_visible_devices"]), row["cuda_visible_devices"]
    pairs = Counter((r["node_id"], r["cuda_visible_devices"]) for r in rows)
    assert sorted(pairs.values()) == [2, 2]
    # ... and the two trials of each (node, GPU) pair held it at the same time.
    runs = child_runs_by_trial(MlflowClient(mlflow_server.uri), out)
    for pair in pairs:
        a, b = (runs[r["trial_id"]].info for r in rows if (r["node_id"], r["cuda_visible_devices"]) == pair)
        assert a.start_time < b.end_time and b.start_time < a.end_time


def test_lost_worker_node_retries_its_trial_from_the_last_checkpoint(tmp_path: Path, cluster, mlflow_server) -> None:
    out = tmp_path / "sweep"
    epochs = 30
    space = write_space(tmp_path, "node-loss", trials=2, concurrency=2, epochs=epochs,
                        resources={"cpu": 1, "gpu": 1})
    cluster.add_node(**WORKER)   # three workers for two trials: one is free to take the retry
    driver = Background(space, out, mlflow_server.uri, cluster)

    where: dict[str, str] = {}   # read once: result.json is being appended to while the trial runs

    def checkpointed() -> str | None:
        """A trial with its 3rd checkpoint on storage and a result that says where it runs."""
        for trial, index in checkpoints(out).items():
            if index >= 2 and (logged := results(out, trial)):
                where[trial] = logged[-1]["node_id"]
                return trial
        return None

    wait_for(checkpointed, 120, "a trial's 3rd checkpoint", driver.alive)
    trial_id, lost = next(iter(where.items()))
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == lost), allow_graceful=False)
    rows = driver.join(240)

    assert len(rows) == 2 and all(r["state"] == "COMPLETE" and r["epochs"] == epochs for r in rows), rows
    retried = next(r for r in rows if r["trial_id"] == trial_id)
    assert retried["resumed_from_epoch"] > 0      # continued from its checkpoint, not from scratch
    assert retried["node_id"] != lost and retried["node_id"] in {n.node_id for n in cluster.worker_nodes}
    other = next(r for r in rows if r["trial_id"] != trial_id)
    assert other["resumed_from_epoch"] == 0
    client = MlflowClient(mlflow_server.uri)
    runs = child_runs_by_trial(client, out)   # one run per trial, the retried one included
    assert sorted(runs) == sorted(r["trial_id"] for r in rows)
    for row in rows:
        run = runs[row["trial_id"]]
        assert run.info.run_id == row["mlflow_run_id"] and run.info.status == "FINISHED"
        assert steps(client, run) == list(range(1, epochs + 1))   # every epoch once, the replayed ones too
        assert run.data.metrics["test_accuracy"] == row["test_accuracy"]   # the last epoch's value


def test_killed_driver_resumes_against_the_surviving_cluster(tmp_path: Path, cluster, mlflow_server) -> None:
    out = tmp_path / "sweep"
    trials, epochs = 5, 40   # long enough to be running when a snapshot (every 2 s) is taken
    space = write_space(tmp_path, "driver-kill", trials=trials, concurrency=2, epochs=epochs,
                        resources={"cpu": 1, "gpu": 1})
    command = [sys.executable, "-m", "weightmom_sweeps", "sweep", str(space), "--address", cluster.address,
               "--out", str(out), "--storage-path", str(out / "ray"), "--tracking-uri", mlflow_server.uri,
               "--verbose", "0"]
    log = tmp_path / "first.log"

    def running() -> bool:
        assert driver.poll() is None, log.read_text()[-3000:]
        return True

    def in_flight() -> set[str]:
        """Running trials with no row yet whose checkpoint Ray's newest snapshot names: what a resume restores."""
        done = {r["trial_id"] for r in sweep_rows(out)} if rows_so_far(out) else set()
        return {t for t, index in snapshot_checkpoints(out).items() if index >= 0} - done

    with open(log, "wb") as sink:
        # Its own session: the SIGKILL takes the driver only; the cluster, started by this test, lives on.
        driver = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: rows_so_far(out) >= 1 and in_flight(), 180, "a finished trial and one in flight", running)
        interrupted = in_flight()
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    finished_before = rows_so_far(out)
    assert 1 <= finished_before < trials
    # A trial in flight when it was looked at may have finished, and got its row, before the kill landed.
    interrupted -= {r["trial_id"] for r in sweep_rows(out)}

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    rows = sweep_rows(out)
    assert len(rows) == trials and len({r["trial_id"] for r in rows}) == trials
    assert all(r["state"] == "COMPLETE" for r in rows), [r["state"] for r in rows]
    # The trials in flight at the kill were re-attached, each continuing from its last checkpoint.
    assert all(r["resumed_from_epoch"] > 0 for r in rows if r["trial_id"] in interrupted), interrupted
    client = MlflowClient(mlflow_server.uri)
    runs = child_runs_by_trial(client, out)
    assert sorted(runs) == sorted(r["trial_id"] for r in rows)
    for row in rows:
        run = runs[row["trial_id"]]
        assert run.info.status == "FINISHED" and run.info.run_id == row["mlflow_run_id"]
        assert steps(client, run) == list(range(1, epochs + 1))
    state = load_state(out)
    study = optuna.load_study(study_name="driver-kill", storage=state.optuna_storage)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == trials
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"


def test_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path: Path, cluster,
                                                                     mlflow_server) -> None:
    from weightmom import TrainConfig, TrainingDiverged, train

    diverging = {"method": "gmp", "density": 0.1, "lr": 10000.0}
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1"):  # the value really gives NaN
        train(TrainConfig(dataset="digits", model="lenet300", epochs=1, device="cpu", **diverging), progress=False)

    out = tmp_path / "sweep"
    space = write_space(tmp_path, "diverging", trials=2, concurrency=2, epochs=3, resources={"cpu": 1, "gpu": 0},
                        start_points=[diverging, {"method": "gmp", "density": 0.1, "lr": 0.05}],
                        lr={"type": "categorical", "choices": [0.05, 10000.0]})
    rows = sweep(space, out, mlflow_server.uri, cluster)

    assert len(rows) == 2
    failed = next(r for r in rows if r["config.lr"] == 10000.0)
    assert failed["state"] == "FAILED" and "diverged" in failed["error"], failed
    assert next(r for r in rows if r is not failed)["state"] == "COMPLETE"
    client = MlflowClient(mlflow_server.uri)
    runs = child_runs_by_trial(client, out)
    run = runs[failed["trial_id"]]
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["error"]
    assert run.data.tags["state"] == "FAILED"


def test_local_storage_is_refused_when_trials_may_run_on_other_machines(tmp_path: Path, cluster, capsys,
                                                                       monkeypatch) -> None:
    from sweeps.execution.storage import NETWORK_FILESYSTEMS, check_shared, filesystem_type, trials_run_elsewhere
    from weightmom.errors import UsageError
    from weightmom_sweeps.cli import main

    local = str(tmp_path / "ray")
    assert filesystem_type(tmp_path) not in NETWORK_FILESYSTEMS
    # No node can fit a 2-CPU trial: it would run on a node an autoscaler adds, another machine.
    big = {"cpu": 2, "gpu": 0}
    space = write_space(tmp_path, "big", trials=1, concurrency=1, epochs=1, resources=big)
    out = tmp_path / "out"
    assert not ray.is_initialized()   # the command connects to the cluster itself
    try:
        assert main(["sweep", str(space), "--address", cluster.address, "--out", str(out), "--verbose", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str((out / "ray").resolve()) in err and "local disk" in err, err
        assert not out.exists()
        assert ray.is_initialized()   # refused after connecting: the check looked at the cluster's nodes
        assert trials_run_elsewhere(big)
        with pytest.raises(UsageError, match=re.escape(local)):
            check_shared(local, big)
        check_shared("s3://bucket/sweeps", big)   # remote storage: every machine reaches it
        monkeypatch.setattr("sweeps.execution.storage.filesystem_type", lambda path: "nfs4")
        check_shared(local, big)                  # a shared mount too
        monkeypatch.undo()
        # Trials that fit the workers run on this machine (every Cluster node has its IP): a local path will do.
        assert not trials_run_elsewhere({"cpu": 1, "gpu": 1})
        check_shared(local, {"cpu": 1, "gpu": 1})
    finally:
        ray.shutdown()
