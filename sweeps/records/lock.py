"""One driver per sweep folder: an exclusive lock on OUT/.sweep.lock, held for the driver's life.

Two drivers on one folder each rewrite the books from their own view and lose rows, so the lock
is taken before anything else is written. It is an fcntl.flock: the kernel releases it when its
holder dies, however it dies, so a stale lock never needs deleting. The file also names the
holder (pid, host, start time): for the refusal message, and to say whose lock a driver took over.
See docs/books.md for what holds on a shared filesystem.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeps.records.folder import LOCK as LOCK_FILE
from weightmom.errors import UsageError

__all__ = ["LOCK_FILE", "Holder", "SweepLock", "read_holder"]


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


class SweepLock:
    """`with SweepLock(out):` holds the folder or raises UsageError naming its holder."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def probe(self) -> None:
        """Raise the holder's line if the folder is held; writes nothing (a shared lock, opened read-only)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            self._lock_or_refuse(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._lock_or_refuse(fd, fcntl.LOCK_EX)
        except UsageError:
            os.close(fd)
            raise
        previous = read_holder(fd)
        if previous is not None:
            print(f"weightmom: took over the lock of a driver that is gone ({previous.describe()}"
                  f"{'' if previous.host == socket.gethostname() else ', another host'})", file=sys.stderr, flush=True)
        me = Holder(os.getpid(), socket.gethostname(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _lock_or_refuse(self, fd: int, kind: int) -> None:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            who = holder.describe() if holder else "a driver that has not written its name yet"
            raise UsageError(f"{self.path.parent} is in use by another sweep driver ({who}); wait for it to end, "
                             "or stop it, then run again") from None

    def release(self) -> None:
        """Clear the holder's name, then the lock: a clean exit leaves no one to take over from."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def read_holder(fd: int) -> Holder | None:
    """The holder named in the lock file (None: empty, or torn by a kill mid-write)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"])) if data else None
    except (ValueError, KeyError, TypeError):
        return None

