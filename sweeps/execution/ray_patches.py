"""One behaviour of Ray 2.60 that a resumed sweep trips over, made idempotent.

Ray keeps a trial's newest `num_to_keep` checkpoints and deletes older ones as new ones arrive. A driver
killed after such a deletion but before its next experiment snapshot leaves a snapshot that still lists
the deleted checkpoint; the resumed driver deletes it again, and Ray's `_delete_fs_path` raises
FileNotFoundError. Ray logs that as an error with a traceback and skips the rest of its checkpoint
bookkeeping for that trial. Deleting what is already gone is success, so it is treated as one.
"""

from __future__ import annotations

from ray.train._internal import checkpoint_manager

_original_delete = checkpoint_manager._delete_fs_path


def _delete_if_present(fs, fs_path: str) -> None:
    try:
        _original_delete(fs=fs, fs_path=fs_path)
    except FileNotFoundError:
        pass   # deleted by the driver before the crash, after its last snapshot


def tolerate_deleted_checkpoints() -> None:
    """Install the idempotent delete in Ray's checkpoint manager (the driver's, where trials' checkpoints are kept)."""
    checkpoint_manager._delete_fs_path = _delete_if_present
