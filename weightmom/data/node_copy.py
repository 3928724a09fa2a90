"""Remote data (an `s3://`, `gs://`, ... or `file://` URI) copied to this node's disk once, then reused.

Every trial on a node calls `local_data_dir(data_dir)`. The first takes an exclusive `fcntl` lock on
`<cache>/<name>-<hash>.lock`, copies into a temporary folder, writes the completion marker into it and
renames it into place; the others wait on the lock, find the marker and copy nothing. A copy killed
part-way leaves only its temporary folder, which the next caller removes and redoes. A plain path is
used where it is (local disk, or shared storage mounted on every node).

The cache lives in $WEIGHTMOM_DATA_CACHE, else <tmp>/weightmom-data: node-local disk on most clusters.
fsspec (and its backend, e.g. s3fs for s3://) is needed only for schemes other than file://.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from weightmom.errors import UsageError, require

__all__ = ["CACHE_ENV", "MARKER", "is_uri", "local_data_dir", "node_copy"]

CACHE_ENV = "WEIGHTMOM_DATA_CACHE"
MARKER = ".weightmom-copy-complete"


def is_uri(data_dir: str) -> bool:
    """`scheme://...` (s3, gs, file, ...); a Windows drive letter or a plain path is not one."""
    scheme = urlparse(data_dir).scheme
    return len(scheme) > 1 and "://" in data_dir


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "weightmom-data").expanduser()


def local_data_dir(data_dir: str) -> str:
    """`data_dir` itself when it is a path; this node's copy of it when it is a URI."""
    return str(node_copy(data_dir)[0]) if is_uri(data_dir) else data_dir


def node_copy(uri: str, cache: Path | None = None) -> tuple[Path, bool]:
    """This node's copy of `uri` and whether this call made it (False: it was there, or another made it)."""
    cache = cache_root() if cache is None else cache
    name = Path(urlparse(uri).path.rstrip("/")).name or "data"
    key = f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"
    target = cache / key
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"data cache {cache}: cannot create it ({err.strerror}); set {CACHE_ENV}") from None
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also if this process dies
        if (target / MARKER).is_file():
            return target, False
        shutil.rmtree(target, ignore_errors=True)   # an unmarked folder is no copy of ours: redo it
        partial = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
        try:
            started = time.time()
            _copy(uri, partial / "data")
            for item in (partial / "data").iterdir():
                item.rename(partial / item.name)
            (partial / "data").rmdir()
            (partial / MARKER).write_text(json.dumps({"uri": uri, "host": socket.gethostname(), "pid": os.getpid(),
                                                      "seconds": round(time.time() - started, 3)}) + "\n")
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target, True


def _copy(uri: str, dest: Path) -> None:
    """The whole tree at `uri` into `dest` (which must not exist)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        source = Path(unquote(parsed.path))
        require(source.is_dir(), f"data_dir {uri}: no such folder")
        shutil.copytree(source, dest)
        return
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"data_dir {uri}: copying a {parsed.scheme}:// URI needs fsspec "
                         f"(pip install fsspec, and its {parsed.scheme} backend)") from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        require(fs.isdir(path), f"data_dir {uri}: no such folder")
        dest.mkdir()
        fs.get(path.rstrip("/") + "/", str(dest), recursive=True)
    except UsageError:
        raise
    except Exception as err:   # backends raise their own types (ImportError for a missing s3fs, auth errors...)
        raise UsageError(f"data_dir {uri}: cannot copy it ({' '.join(f'{type(err).__name__}: {err}'.split())})") \
            from None
