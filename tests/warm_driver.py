"""Sweep drivers forked from a warm interpreter: the same `weightmom` main() in its own process and session,
without the 8 s of imports (torch, Ray, MLflow) that each `python -m weightmom_sweeps` pays on 2 cores.

A test that starts many drivers (tests/test_chaos.py) spends most of its time importing otherwise. The
forkserver imports the sweep layer once; each driver is forked from it, becomes the leader of its own
session (so a SIGKILL to its group takes the driver and the Ray it starts, as for a real one), and
writes its stdout and stderr to files.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

PRELOAD = ["weightmom_sweeps.cli", "sweeps.execution.runner", "sweeps.analysis.plots", "sweeps.bookkeeping.recorder"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def _main(argv: list[str], env: dict[str, str], stdout: str, stderr: str) -> None:
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import weightmom_sweeps.cli

    code = weightmom_sweeps.cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class WarmDriver:
    """A driver process with the parts of subprocess.Popen's interface the tests use."""

    def __init__(self, argv: list[str], stdout: Path, stderr: Path, env: dict[str, str]) -> None:
        self.stdout, self.stderr = stdout, stderr
        self._process = _context.Process(target=_main, args=(argv, env, str(stdout), str(stderr)), daemon=False)
        self._process.start()
        self.pid = self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("weightmom sweep", timeout)
        return self._process.exitcode

    def kill_group(self) -> None:
        """SIGKILL the driver's session: the driver and the local Ray it started."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(argv: list[str], folder: Path, name: str, env: dict[str, str],
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a driver to its end: its exit code, stdout and stderr, as subprocess.run gives them."""
    driver = WarmDriver(argv, folder / f"{name}.out", folder / f"{name}.err", env)
    try:
        code = driver.wait(timeout)
    finally:
        if driver.poll() is None:
            driver.kill_group()
    return subprocess.CompletedProcess(argv, code, driver.stdout.read_text(), driver.stderr.read_text())


def run_cli(command: list[str], folder: Path, name: str, env: dict[str, str],
            timeout: float = 600) -> subprocess.CompletedProcess:
    """`run` for a whole `python -m weightmom_sweeps ...` command line, as the tests build them."""
    assert command[:3] == [sys.executable, "-m", "weightmom_sweeps"], command[:3]
    return run(command[3:], folder, name, env, timeout)
