"""Shared paths and fixtures: real data only (sklearn digits, ../shared/data/cifar10-mini)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"


# Tests that use these fixtures start Ray or an MLflow server: the slow lane (`make test-fast` skips them).
SLOW_FIXTURES = {"local_ray", "mlflow_server", "cluster", "finished_sweep"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Slow tests first (a stable sort): on two workers (make test's default), the long ones start early and the
    # quick ones fill in around them, rather than a long test starting last and ending alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    if not CIFAR_MINI.is_dir():
        pytest.skip(f"{CIFAR_MINI} is missing (../shared beside the repository)")
    return CIFAR_MINI


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: intra-op threads only contend (30x slower on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a real MLflow tracking server on 127.0.0.1, in its own process group ------------------



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` started by the test; stop() ends its whole process group
    (MLflow 3.17 leaves worker processes that ignore SIGTERM)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.process = root, free_port(), None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts")],
            stdout=open(self.root / "server.log", "ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
                if sig == signal.SIGTERM:
                    time.sleep(0.5)
                    os.killpg(self.process.pid, signal.SIGKILL)  # workers that ignored SIGTERM
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
            break
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_ray():
    """A small real Ray, shut down after the test."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
