"""`weightmom sweep --code-dir`: the user's module reaches trials on other nodes through Ray's runtime env.

A `ray.cluster_utils.Cluster` on this machine: a head with no CPUs (no trial runs there) and two
worker nodes. The user's module lives in a temp folder that is on no worker's path; the test shows
both that a plain task on a worker cannot import it, and that the sweep's trials there did, from the
copy Ray unpacked for them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import ray
import yaml

from sweeps.records.results import sweep_rows
from tests.test_own_model import USER_MODULE, make_shapes
from weightmom_sweeps.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@ray.remote(num_cpus=1)
def can_import(module: str) -> tuple[str, bool]:
    return ray.get_runtime_context().get_node_id(), importlib.util.find_spec(module) is not None


def test_trials_on_worker_nodes_import_the_module_shipped_with_code_dir(tmp_path: Path, cluster, capsys) -> None:
    code_dir, marker = tmp_path / "code", tmp_path / "imported"
    code_dir.mkdir()
    (code_dir / "mymod.py").write_text(USER_MODULE)
    data = make_shapes(tmp_path / "shapes", train=12, test=4)
    workers = {node.node_id for node in cluster.worker_nodes}

    # Half one: without the runtime env, no worker can import mymod.
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        probes = ray.get([can_import.options(scheduling_strategy=ray.util.scheduling_strategies.
                                             NodeAffinitySchedulingStrategy(node, soft=False)).remote("mymod")
                          for node in workers])
    finally:
        ray.shutdown()
    assert {node for node, _ in probes} == workers and not any(found for _, found in probes)

    # Half two: with --code-dir, trials on both workers import it from the copy Ray shipped.
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "name": "code-dir", "trials": 2, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
        "early_stopping": False,
        "fixed": {"dataset": "imagefolder", "data_dir": str(data), "model": "mymod:build", "epochs": 2,
                  "batch_size": 16, "device": "cpu", "method": "gmp", "density": 0.5,
                  "model_args": {"marker": str(marker)}},
        "params": {"model_args.channels": {"type": "categorical", "choices": [10, 20]}},
        "start_points": [{"model_args.channels": 10}, {"model_args.channels": 20}]}))
    out = tmp_path / "sweep"
    try:
        assert main(["sweep", str(space), "--address", cluster.address, "--code-dir", str(code_dir),
                     "--out", str(out), "--verbose", "0"]) == 0, capsys.readouterr().err[-3000:]
    finally:
        ray.shutdown()
    rows = sweep_rows(out)
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows), rows
    assert {r["node_id"] for r in rows} <= workers
    imported_from = {Path(p.read_text()) for p in marker.iterdir()}
    assert imported_from and all(code_dir not in p.parents for p in imported_from), imported_from
    assert all("runtime_resources" in p.parts and "py_modules_files" in p.parts for p in imported_from)
