"""Where Ray keeps trial checkpoints, and whether every trial can reach it.

On one machine any folder works. When trials run on other machines, the
storage must be shared (s3://, gs://, or a network filesystem); Ray itself
only notices at a trial's first checkpoint, possibly hours in. This module
says so before the first trial.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

from sweeps.records.folder import RAY_STORAGE
from weightmom.errors import UsageError

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "glusterfs", "ceph", "beegfs", "gpfs",
                       "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.sshfs", "efs")


def is_remote_uri(path: str) -> bool:
    return urlparse(path).scheme not in ("", "file")


def filesystem_type(path: Path) -> str:
    """The type of the mount that holds `path` (from /proc/mounts; "unknown" elsewhere)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        mount = fields[1].rstrip("/") + "/" if len(fields) >= 3 else None
        if mount and (str(path) + "/").startswith(mount) and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def trials_run_elsewhere(trial_resources: dict[str, float]) -> bool:
    """True if a trial may run on another machine than this driver's, now or once the cluster scales up."""
    import ray

    here = ray.util.get_node_ip_address()
    able = [n for n in ray.nodes() if n.get("Alive") and all(
        n.get("Resources", {}).get(key.upper() if key in ("cpu", "gpu") else key, 0) >= amount
        for key, amount in trial_resources.items() if amount > 0)]
    return not able or any(n.get("NodeManagerAddress") != here for n in able)


def check_shared(storage: str, trial_resources: dict[str, float]) -> None:
    """Refuse a local storage path for a sweep whose trials run on other machines."""
    if is_remote_uri(storage) or not trials_run_elsewhere(trial_resources):
        return
    kind = filesystem_type(Path(storage))
    if kind in NETWORK_FILESYSTEMS or kind.startswith("fuse."):
        return
    raise UsageError(
        f"trials will run on other machines, but checkpoint storage {storage} is on a local disk ({kind}); "
        "set storage_path in the space or --storage-path to s3://BUCKET/PATH or a shared (NFS) folder")


def default_storage(out: Path) -> str:
    return str((out / RAY_STORAGE).resolve())


def ensure_local(storage: str) -> None:
    if not is_remote_uri(storage):
        os.makedirs(storage, exist_ok=True)


def experiment_base(name: str) -> str:
    """A sweep's first Ray experiment: recovery names the later ones <base>-r1, <base>-r2, ..."""
    return re.fullmatch(r"(.*?)(-r\d+)?", name).group(1)


def sweep_experiments(names: list[str], current: str) -> list[str]:
    """Of the folders `names` under a sweep's storage, its own Ray experiments, the first first."""
    base = experiment_base(current)
    return sorted(n for n in names if n == base or n.startswith(f"{base}-r"))
