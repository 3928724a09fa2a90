"""Writing output files so that a crash or a bad path never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from weightmom.errors import require


def check_writable(path: str | Path | None, flag: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path is None:
        return
    target = Path(path)
    parent = target.parent
    require(not target.is_dir(), f"{flag} {path}: is a directory")
    require(parent.is_dir(), f"{flag} {path}: directory {parent} does not exist")
    require(os.access(parent, os.W_OK), f"{flag} {path}: directory {parent} is not writable")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename over `path`: readers see the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
