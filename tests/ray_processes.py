"""The processes of a Ray that a test started in a temp dir of its own, found and ended by pid.

Ray rewrites its agents' command lines (`ray::DashboardAgent`), so a process is ours when its
command line names the folder or it holds a file open in it (its session's logs). Nothing else
on the machine is touched: other sessions' Rays live in other folders.
"""

from __future__ import annotations

import os
import time

import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path

# isort: split
import psutil


def processes_in(folder: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `folder` or that hold a file open under it."""
    folder = folder.rstrip("/") + "/"
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            ours = any(folder in arg for arg in process.info["cmdline"] or ()) or any(
                f.path.startswith(folder) for f in process.open_files())
        except psutil.Error:
            continue
        if ours:
            found.append(process)
    return found


def end_processes(folder: str, timeout: float = 15.0) -> list[int]:
    """SIGTERM, then SIGKILL what is still alive; returns the pids that were found."""
    found = processes_in(folder)
    for how in ("terminate", "kill"):
        for process in found:
            try:
                getattr(process, how)()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(found, timeout=timeout if how == "terminate" else 5)
        if not alive:
            break
    return [p.pid for p in found]


def wait_gone(folder: str, timeout: float) -> list[psutil.Process]:
    """Poll until no process of `folder` is left; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def main(folders: list[str]) -> int:
    """`python -m tests.ray_processes FOLDER...`: end what `ray down` left of a cluster-local.yaml head."""
    for folder in folders:
        pids = end_processes(os.path.abspath(os.path.expanduser(folder)))
        print(f"{folder}: ended {len(pids)} processes {pids}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
