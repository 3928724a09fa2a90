"""Three behaviours of Ray 2.60 (pinned) that a long or resumed sweep trips over, and their fixes.

- A re-deleted checkpoint. Ray keeps a trial's newest `num_to_keep` checkpoints and deletes older ones
  as new ones arrive. A driver killed after such a deletion but before its next experiment snapshot leaves
  a snapshot that still lists the deleted checkpoint; the resumed driver deletes it again, and Ray's
  `_delete_fs_path` raises FileNotFoundError, which Ray logs with a traceback before skipping the rest
  of its checkpoint bookkeeping for that trial. Deleting what is already gone is success.
- A snapshot whose cost grows with the sweep. Ray writes the experiment's state (every trial's) every
  TUNE_GLOBAL_CHECKPOINT_S, 2 s here so that a crash loses little; at 3,000 trials that was 13% of the
  driver's time and growing. Ray's own "auto" rule (the period is 19x the last snapshot's duration, so
  snapshots take about 5% of the time) is applied above the 2 s floor, instead of Ray's 10 s.
- A snapshot written while the last one is still being uploaded. Ray uploads the driver's staging folder
  in a background thread, and the next snapshot writes into that folder without waiting for it: the
  upload can list the searcher's temp file and find it renamed away (FileNotFoundError, logged with a
  traceback), or copy the trial table of one snapshot beside the searcher state of the next (a torn
  snapshot). The next snapshot now waits for the upload before writing; that wait counts in the
  snapshot's cost, so the rule above stretches the period if uploads are slow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ray.train._internal import checkpoint_manager
from ray.tune.execution import experiment_state

logger = logging.getLogger(__name__)

SNAPSHOT_SHARE = 19   # period / duration: Ray's "auto" rule, about 5% of the driver's time in snapshots

_original_delete = checkpoint_manager._delete_fs_path


def _delete_if_present(fs, fs_path: str) -> None:
    try:
        _original_delete(fs=fs, fs_path=fs_path)
    except FileNotFoundError:
        pass   # deleted by the driver before the crash, after its last snapshot


def tolerate_deleted_checkpoints() -> None:
    """Install the idempotent delete in Ray's checkpoint manager (the driver's, where trials' checkpoints are kept)."""
    checkpoint_manager._delete_fs_path = _delete_if_present


def bound_snapshot_cost() -> None:
    """Stretch the snapshot period to SNAPSHOT_SHARE x the last snapshot's duration, never below the period set."""
    try:
        floor = float(os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", ""))
    except ValueError:   # "auto" (Ray's own rule) or unset: nothing to do
        return

    def update(manager, time_taken: float) -> None:
        manager._checkpoint_period = max(floor, SNAPSHOT_SHARE * time_taken)

    experiment_state._ExperimentCheckpointManager._update_auto_checkpoint_time = update


_original_sync_up = experiment_state._ExperimentCheckpointManager.sync_up_experiment_state


def _finish_upload(manager) -> None:
    try:
        manager._storage.syncer.wait()   # returns at once when no upload is running
    except Exception:   # reported as Ray reports a failed upload; the new snapshot is uploaded regardless
        logger.error("Uploading the last experiment snapshot failed", exc_info=True)


def _sync_up_after_last_upload(manager, save_fn: Callable[[], None], force: bool = False,
                               wait: bool = False) -> None:
    def save_when_uploaded() -> None:   # Ray calls it only when a snapshot is due
        _finish_upload(manager)
        save_fn()

    _original_sync_up(manager, save_when_uploaded, force=force, wait=wait)


def write_snapshots_after_uploads() -> None:
    """Make each experiment snapshot wait for the previous one's upload before writing its files."""
    experiment_state._ExperimentCheckpointManager.sync_up_experiment_state = _sync_up_after_last_upload
