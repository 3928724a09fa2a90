"""`ray up cluster-local.yaml` for real: Ray's cluster launcher over SSH to this machine's loopback.

The commands are docs/cluster.md's "Try it on one machine first", in order: `ray up`, `ray job
submit` of a digits sweep, `ray rsync-down` of the sweep folder, `ray down`. What the test adds
is what a user's machine has already: an sshd (here on 127.0.0.1, a free port, host and user keys
made for the test, the login's HOME in a temp dir so nothing lands in the real one) and the token
file. Ray's launcher has no ssh port setting, so its ssh reaches that port through
`auth.ssh_proxy_command` (tests/tcp_relay.py). Every address used is 127.0.0.1.

`ray down` returns 0 but leaves the head's Ray (gcs_server, raylet, agents) and MLflow running
(its `ray stop` finds no `ray` on the login PATH, on purpose: see cluster-local.yaml). The test
ends them by pid, as docs/cluster.md tells the user to, and checks that nothing it started is left.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps.records.folder import FRONT, FRONT_TEXT, PLOTS, SWEEP_STATE_FILE
from sweeps.records.results import sweep_rows
from sweeps.records.state import load_state
from tests.conftest import REPO, free_port
from tests.ray_processes import end_processes, processes_in, wait_gone

pytestmark = pytest.mark.slow

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
VENV_BIN = Path(sys.executable).parent


def run(cmd: list[str], env: dict, timeout: float = 600, cwd: Path = REPO) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n" \
                                 f"{done.stderr[-4000:]}"
    return done.stdout


def wait_http(url: str, timeout: float, home: Path) -> None:
    """Poll until anything answers HTTP at `url` (401 without the token is an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            logs = "\n".join(p.read_text()[-2000:] for p in home.glob("ray-temp/session_latest/logs/dashboard.*"))
            assert time.monotonic() < deadline, f"no dashboard at {url}:\n{logs}"
            time.sleep(0.5)


def submit_when_agent_ready(cmd: list[str], env: dict, timeout: float) -> str:
    """`ray job submit`, again while the head's job agent is not up yet (the dashboard answers first)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL)
        if done.returncode == 0 or "No available agent" not in done.stdout + done.stderr:
            assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            return done.stdout
        assert time.monotonic() < deadline, "the job agent did not come up"
        time.sleep(1)


class LoopbackSshd:
    """An sshd on 127.0.0.1 for root with a key of its own; logins get HOME=root/home."""

    def __init__(self, root: Path) -> None:
        self.root, self.home, self.port = root, root / "home", free_port()
        self.key = root / "id_ed25519"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.home.mkdir()
        for name in ("host_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / name)], check=True)
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {self.port}", f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.key}.pub",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "StrictModes no", "UsePAM no", f"SetEnv HOME={self.home}", "AllowTcpForwarding yes", ""]))
        Path("/run/sshd").mkdir(exist_ok=True)   # sshd's privilege-separation folder
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.root / "sshd.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, (self.root / "sshd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)


def local_cluster_file(root: Path, sshd: LoopbackSshd, token: Path, ports: dict[str, int]) -> Path:
    """cluster-local.yaml as docs/cluster.md edits it (VENV_BIN), plus this test's sshd, token and ports."""
    text = (REPO / "cluster-local.yaml").read_text().replace("VENV_BIN", str(VENV_BIN))
    for default, name in (("--port=6379", "gcs"), ("--dashboard-port=8265", "dashboard"), ("--port 5000", "mlflow"),
                          ("--dashboard-agent-listen-port=52365", "agent")):
        assert default in text, default
        text = text.replace(default, default[:-5 if name == "agent" else -4] + str(ports[name]))
    config = yaml.safe_load(text)
    config["cluster_name"] = f"weightmom-test-{root.name}"
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(sshd.key),
                      "ssh_proxy_command": f"{sys.executable} {REPO / 'tests' / 'tcp_relay.py'} 127.0.0.1 {sshd.port}"}
    config["file_mounts"]["~/.ray/auth_token"] = str(token)
    path = root / "cluster-local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def loopback(tmp_path_factory):
    """The sshd, the token and the environment of the user's shell; everything ended afterwards."""
    root = Path(tempfile.mkdtemp(prefix="wmup", dir="/tmp"))   # short: Ray's socket paths live under it
    if not Path(SSHD).exists() or not shutil.which("rsync"):
        pytest.skip("needs openssh-server and rsync (.ci/run installs them)")
    sshd = LoopbackSshd(root)
    token = root / "weightmom-sweeps.token"
    token.write_text(os.urandom(32).hex())
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        sshd.start()
        yield root, sshd, token, env
    finally:
        end_processes(str(root))
        sshd.stop()
        left = wait_gone(str(root), 30)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left running: {[p.pid for p in left]}"


def test_ray_up_job_submit_rsync_down_ray_down_on_loopback(loopback) -> None:
    root, sshd, token, env = loopback
    ports = {"gcs": free_port(), "dashboard": free_port(), "mlflow": free_port(), "agent": free_port()}
    cluster = str(local_cluster_file(root, sshd, token, ports))
    dashboard, tracking = f"http://127.0.0.1:{ports['dashboard']}", f"http://127.0.0.1:{ports['mlflow']}"

    run(["ray", "up", cluster, "--yes"], env)
    assert (sshd.home / "weightmom-sweeps" / "pyproject.toml").is_file()   # file_mounts synced the project
    # On the head, as the docs' "Watch it": the token reaches `ray status` through ~/.bashrc.
    status = run(["ray", "exec", cluster, f"{VENV_BIN}/ray status --address 127.0.0.1:{ports['gcs']}"], env)
    assert "local.cluster.node" in status and "/2.0 CPU" in status, status
    wait_http(dashboard, 120, sshd.home)   # `ray start` returns before the dashboard answers
    out = sshd.home / "runs" / "local"   # the docs' ~/runs/local: the head's home is the test's
    submit = ["ray", "job", "submit", "--address", dashboard, "--working-dir", ".", "--submission-id", "local", "--",
              f"{VENV_BIN}/weightmom", "sweep", "digits-quick", "--trials", "4", "--address", "auto",
              "--tracking-uri", tracking, "--out", str(out), "--verbose", "0"]
    job = submit_when_agent_ready(submit, env, 180)
    print(job[-3000:])
    assert "Job 'local' succeeded" in job, job[-3000:]
    fetched = root / "fetched"
    run(["ray", "rsync-down", cluster, f"{out}/", f"{fetched}/"], env)

    rows = sweep_rows(fetched)
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows), [r["state"] for r in rows]
    assert (fetched / FRONT).is_file() and (fetched / PLOTS / FRONT_TEXT).read_text().strip()
    state = load_state(fetched)
    runs = MlflowClient(tracking).search_runs(
        [state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(r["trial_id"] for r in rows)
    assert json.loads((fetched / SWEEP_STATE_FILE).read_text())

    run(["ray", "down", cluster, "--yes"], env)
    head = [str(sshd.home / "ray-temp"), str(sshd.home / "mlflow")]
    left = [p.pid for folder in head for p in processes_in(folder)]
    assert left   # what `ray down` leaves (see the module's docstring): ended by pid, as the docs say
    print(run([sys.executable, "-m", "tests.ray_processes", *head], env))
    assert not [p.pid for folder in head for p in wait_gone(folder, 30)]
