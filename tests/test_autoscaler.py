"""cluster.yaml's GPU group on one machine: Ray's autoscaler with its fake multi-node provider.

The head has no CPUs (no trial runs there) and the one worker type has 1 CPU and 1 fake GPU, from
0 to 2 nodes, as cluster.yaml's `gpu_worker` (0 to 8). The provider is Ray's own `fake_multinode`:
the autoscaler decides what to launch and terminate exactly as on AWS, and a "launch" starts a
real raylet on this machine. Its nodes get Ray's GPU ids, so CUDA_VISIBLE_DEVICES is set although
there is no GPU; the digits trials train on the CPU (`device: cpu`).

Ray 2.60's `ray.cluster_utils.AutoscalingCluster` reads a fake_multi_node/example.yaml that its
wheel lacks, and runs `ray stop --force` (every Ray on the machine), so the config is written here
and the head is started with `ray start` in a temp dir of the test's own, ended by pid.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from sweeps.execution.runner import SweepOptions, run_sweep
from sweeps.records.results import sweep_rows
from sweeps.records.state import load_state
from sweeps.space.search_space import load_space
from tests.conftest import free_port
from tests.ray_processes import end_processes, processes_in
from tests.test_cluster_faults import FAST_NODE_DEATH, Background, checkpoints, results, wait_for, write_space

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

RAY = str(Path(sys.executable).with_name("ray"))
WORKER_TYPE = "gpu_worker"
IDLE_TIMEOUT_MINUTES = 0.1   # cluster.yaml: 5


def autoscaling_config(gcs_address: str) -> dict:
    """cluster.yaml's shape (CPU-0 head, a 0..N GPU group) for the fake provider, every key Ray requires."""
    return {
        "cluster_name": "weightmom-fake", "max_workers": 2, "upscaling_speed": 8.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        # use_node_id_as_ip: the provider names nodes by the ids it makes their raylets use.
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "auth": {},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0,
                          "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class FakeCluster:
    """A Ray head with the fake provider's autoscaler, in its own temp dir, with token auth on."""

    def __init__(self) -> None:
        # Short: Ray's socket paths under it must fit in 107 characters.
        self.root = tempfile.mkdtemp(prefix="wmas", dir="/tmp")
        self.address = f"127.0.0.1:{free_port()}"
        self.token = Path(self.root) / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.env = {
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),   # as cluster.yaml's nodes
            "RAY_USAGE_STATS_ENABLED": "0",   # nothing leaves 127.0.0.1
            "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            # A node whose raylet stopped reporting is terminated (and replaced) after 5 s, not 30.
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": "5",
            # Every node Ray starts, the autoscaler's too, takes 127.0.0.1 as its address.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "WEIGHTMOM_CHECKPOINT_EVERY_S": "0",   # the workers inherit it from the autoscaler
        }

    def start(self) -> None:
        config = Path(self.root) / "autoscaling.yaml"
        config.write_text(yaml.safe_dump(autoscaling_config(self.address)))
        done = subprocess.run(
            [RAY, "start", "--head", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
             f"--port={self.address.split(':')[1]}",
             "--num-cpus=0", "--num-gpus=0", f"--temp-dir={self.root}", f"--autoscaling-config={config}",
             "--include-dashboard=false",
             f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
             f"--system-config={json.dumps(FAST_NODE_DEATH)}"],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ray start failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def status(self) -> dict:
        """The autoscaler's own report (what `ray status` prints), read from the GCS."""
        from ray._raylet import GcsClient

        raw = GcsClient(address=self.address).internal_kv_get(b"__autoscaling_status", None)
        return json.loads(raw) if raw else {}

    def workers(self) -> dict[str, int]:
        """Node type -> active workers, as the autoscaler counts them."""
        report = self.status().get("autoscaler_report") or {}
        return {t: n for t, n in (report.get("active_nodes") or {}).items() if t == WORKER_TYPE}

    def stop(self) -> list[int]:
        return end_processes(self.root)


@pytest.fixture(scope="module")
def fake_cluster():
    from ray._private.authentication_test_utils import reset_auth_token_state

    cluster = FakeCluster()
    with pytest.MonkeyPatch.context() as env:
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
            env.setenv(key, cluster.env[key])   # the in-process driver presents the token too
        reset_auth_token_state()   # Ray caches the mode and the token at first use
        # Loopback only, as the nodes: else Ray "canonicalizes" 127.0.0.1 to the machine's outward address.
        env.setattr("ray._private.ray_constants.ENABLE_RAY_CLUSTER", False)
        # Every fake node is this machine, with this disk: as a shared mount would be on a real cluster.
        env.setattr("sweeps.execution.storage.filesystem_type", lambda path: "nfs4")
        try:
            cluster.start()
            yield cluster
        finally:
            ray.shutdown()
            cluster.stop()
            env.undo()
            reset_auth_token_state()
            shutil.rmtree(cluster.root, ignore_errors=True)
            assert not processes_in(cluster.root), "processes of the fake cluster outlived it"


def sweep(space: Path, out: Path, uri: str, cluster: FakeCluster) -> list[dict]:
    try:
        return run_sweep(load_space(space), SweepOptions(out=out, tracking_uri=uri, address=cluster.address,
                                                         verbose=0))
    finally:
        ray.shutdown()


def observe_workers(cluster: FakeCluster, driver: Background, seen: list[int]) -> bool:
    """Record the autoscaler's active-worker count while the sweep runs; True once it has ended."""
    seen.append(cluster.workers().get(WORKER_TYPE, 0))
    return not driver.alive()


def test_gpu_trials_launch_workers_from_zero_and_idle_workers_go(tmp_path: Path, fake_cluster,
                                                                 mlflow_server) -> None:
    wait_for(lambda: "autoscaler_report" in fake_cluster.status(), 60, "the autoscaler's first report")
    assert fake_cluster.workers() == {}          # zero workers before the sweep
    out = tmp_path / "sweep"
    space = write_space(tmp_path, "from-zero", trials=3, concurrency=3, epochs=3, resources={"cpu": 1, "gpu": 1})
    driver = Background(space, out, mlflow_server.uri, fake_cluster)
    seen: list[int] = []
    wait_for(lambda: observe_workers(fake_cluster, driver, seen), 300, "the sweep's end")
    rows = driver.join(10)

    assert max(seen) == 2, seen                  # the autoscaler launched both workers (max_workers 2)
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" and r["epochs"] == 3 for r in rows), rows
    assert len(sweep_rows(out)) == 3
    head = {n["NodeID"] for n in ray_nodes(fake_cluster) if "node:__internal_head__" in n["Resources"]}
    assert len(head) == 1 and not head & {r["node_id"] for r in rows}   # never on the CPU-less head
    assert all(r["node_id"].startswith("fffff") for r in rows)   # the fake provider's node ids
    assert all(r["cuda_visible_devices"] == "0" for r in rows)   # each node's one GPU
    # Idle for IDLE_TIMEOUT_MINUTES, the workers go: the autoscaler reports none, the GCS has them dead.
    wait_for(lambda: fake_cluster.workers() == {}, 180, "the idle workers' removal")
    wait_for(lambda: not [n for n in ray_nodes(fake_cluster) if n["Alive"] and n["Resources"].get("GPU")],
             60, "the GCS to see the workers gone")


def ray_nodes(cluster: FakeCluster) -> list[dict]:
    """ray.nodes(): through the sweep's driver while it is connected, else a short connection of its own."""
    if ray.is_initialized():
        return ray.nodes()
    ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
    try:
        return ray.nodes()
    finally:
        ray.shutdown()


def kill_node(cluster: FakeCluster, node_id: str) -> list[int]:
    """A spot reclaim: SIGKILL every process of one fake node (its raylet, agents and trial workers).

    The provider started the node's processes with RAY_OVERRIDE_NODE_ID_FOR_TESTING set to its id;
    the autoscaler is not told, it finds out as on AWS, from the missing heartbeats.
    """
    import psutil

    killed = []
    for process in processes_in(cluster.root):
        try:
            if process.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id:
                process.kill()
                killed.append(process.pid)
        except psutil.Error:
            continue
    return killed


def test_preempted_worker_is_replaced_and_its_trial_continues_from_its_checkpoint(tmp_path: Path, fake_cluster,
                                                                                  mlflow_server) -> None:
    wait_for(lambda: fake_cluster.workers() == {}, 180, "zero workers to start from")
    out = tmp_path / "sweep"
    # One trial at a time, so one worker: its retry has to wait for the node the autoscaler launches in
    # place of the lost one (with a second worker up, it could take that one instead).
    epochs = 20
    space = write_space(tmp_path, "preempted", trials=2, concurrency=1, epochs=epochs,
                        resources={"cpu": 1, "gpu": 1})
    driver = Background(space, out, mlflow_server.uri, fake_cluster)
    where: dict[str, str] = {}

    def checkpointed() -> str | None:
        """A trial with its 3rd checkpoint on storage and a result that says where it runs."""
        for trial, index in checkpoints(out).items():
            if index >= 2 and (logged := results(out, trial)):
                where[trial] = logged[-1]["node_id"]
                return trial
        return None

    wait_for(checkpointed, 180, "a trial's 3rd checkpoint", driver.alive)
    trial_id, lost = next(iter(where.items()))
    before = {n["NodeID"] for n in ray_nodes(fake_cluster)}
    assert kill_node(fake_cluster, lost)
    rows = driver.join(300)

    assert len(rows) == 2 and all(r["state"] == "COMPLETE" and r["epochs"] == epochs for r in rows), rows
    retried = next(r for r in rows if r["trial_id"] == trial_id)
    assert 0 < retried["resumed_from_epoch"] < epochs   # from its checkpoint, not from scratch
    assert retried["node_id"] not in before             # on a node launched after the reclaim
    assert next(r for r in rows if r["trial_id"] != trial_id)["resumed_from_epoch"] == 0
    nodes = {n["NodeID"]: n for n in ray_nodes(fake_cluster)}
    assert not nodes[lost]["Alive"]
    # Every trial once: in trials.parquet, in MLflow (one child run each) and in Optuna.
    table = sweep_rows(out)
    assert sorted(r["trial_id"] for r in table) == sorted(r["trial_id"] for r in rows)
    client = MlflowClient(mlflow_server.uri)
    state = load_state(out)
    runs = client.search_runs([state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    assert Counter(r.data.tags["trial_id"] for r in runs) == Counter(r["trial_id"] for r in rows)
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "test_accuracy")
        assert [m.step for m in history] == list(range(1, epochs + 1))   # the replayed epochs once
    study = optuna.load_study(study_name="preempted", storage=state.optuna_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    wait_for(lambda: fake_cluster.workers() == {}, 180, "the idle workers' removal")
