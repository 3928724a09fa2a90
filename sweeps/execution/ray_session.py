"""The local Ray a sweep started, and what a killed driver leaves of it.

When the driver of a local sweep is SIGKILLed, Ray's GCS, raylet and workers follow it, but
`ray::DashboardAgent` and `ray::RuntimeEnvAgent` stay alive, orphaned, for good (measured with
Ray 2.60). Their command lines are rewritten to those titles, so they cannot be told apart by
name from the agents of another Ray on the machine; what marks them is the log files they hold
open in their own session folder. So a sweep that starts its own Ray writes that folder and the
driver's pid to the sweep folder, and `--resume` ends the processes holding files open in it,
once the driver that started it is gone. No other process is touched.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import ray  # noqa: F401 - Ray ships psutil (ray/thirdparty_files) and puts it on sys.path: import it first

# isort: split
import psutil

from sweeps.records.folder import RAY_SESSION
from weightmom.files import atomic_write

log = logging.getLogger(__name__)

SESSION_FILE = RAY_SESSION


def record(out: Path, session_dir: str) -> None:
    """Remember the local Ray session this driver started (called once the sweep folder exists)."""
    me = psutil.Process()
    text = json.dumps({"session_dir": str(Path(session_dir).resolve()), "driver_pid": me.pid,
                       "driver_started": me.create_time()})
    atomic_write(out / SESSION_FILE, lambda tmp: Path(tmp).write_text(text))


def end_leftovers(out: Path, wait_s: float = 5.0) -> list[int]:
    """End what is left of the previous driver's local Ray session; returns the pids ended."""
    path = out / SESSION_FILE
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text())
    if _alive(recorded["driver_pid"], recorded["driver_started"]):
        return []   # that driver still runs: its Ray is in use, not left over
    folder = recorded["session_dir"].rstrip("/") + "/"
    leftovers = [p for p in psutil.process_iter(["pid"]) if p.pid != os.getpid() and _holds_files_in(p, folder)]
    for process in leftovers:
        _signal(process, "terminate")
    alive = _still_running(leftovers, wait_s)
    for process in alive:   # the agents ignore SIGTERM for longer than a resume should wait
        _signal(process, "kill")
    _still_running(alive, wait_s)
    if leftovers:
        log.info("ended %d processes left by the previous driver's Ray (%s)", len(leftovers), folder)
    return [p.pid for p in leftovers]


def _alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0   # not a reused pid
    except psutil.Error:
        return False


def _still_running(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process is gone or a zombie (orphans are reaped by init, if the machine has one)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _holds_files_in(process: psutil.Process, folder: str) -> bool:
    try:
        return any(f.path.startswith(folder) for f in process.open_files())
    except psutil.Error:   # gone meanwhile, or another user's process: not ours
        return False


def _signal(process: psutil.Process, how: str) -> None:
    try:
        getattr(process, how)()
    except psutil.Error:
        pass
