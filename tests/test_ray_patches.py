"""The two Ray 2.60 fixes a long or resumed sweep needs (sweeps/execution/ray_patches.py), on Ray's own objects."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
from ray.train._internal import checkpoint_manager
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

from sweeps.execution import ray_patches


def test_deleting_a_checkpoint_that_is_already_gone_is_not_an_error(tmp_path: Path) -> None:
    original = checkpoint_manager._delete_fs_path
    try:
        ray_patches.tolerate_deleted_checkpoints()
        fs = pyarrow.fs.LocalFileSystem()
        folder = tmp_path / "checkpoint_000000"
        folder.mkdir()
        (folder / "state.pt").write_bytes(b"x")
        checkpoint_manager._delete_fs_path(fs=fs, fs_path=str(folder))   # what Ray's manager calls
        assert not folder.exists()
        checkpoint_manager._delete_fs_path(fs=fs, fs_path=str(folder))   # again, as a resumed driver does
    finally:
        checkpoint_manager._delete_fs_path = original


def test_the_snapshot_period_stretches_with_its_cost_above_the_floor(monkeypatch) -> None:
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "2")
    original = _ExperimentCheckpointManager._update_auto_checkpoint_time
    try:
        ray_patches.bound_snapshot_cost()
        manager = _ExperimentCheckpointManager(storage=None, checkpoint_period=2)
        manager._update_auto_checkpoint_time(time_taken=0.01)   # cheap snapshots: every 2 s, as before
        assert manager._checkpoint_period == 2
        manager._update_auto_checkpoint_time(time_taken=0.5)    # a large experiment: 5% of the time
        assert manager._checkpoint_period == 0.5 * ray_patches.SNAPSHOT_SHARE
    finally:
        _ExperimentCheckpointManager._update_auto_checkpoint_time = original
