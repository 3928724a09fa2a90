"""The three Ray 2.60 fixes a long or resumed sweep needs (sweeps/execution/ray_patches.py), on Ray's own objects."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
from ray.train._internal import checkpoint_manager
from ray.train._internal.storage import _FilesystemSyncer
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


def test_a_snapshot_is_written_only_after_the_last_one_is_uploaded(tmp_path: Path) -> None:
    """The race that logged a traceback: Ray's upload listed the searcher's temp file, then the next
    snapshot renamed it away. Here the upload is slow, and the next snapshot must find it finished."""
    original = _ExperimentCheckpointManager.sync_up_experiment_state
    staging, uploaded_to = tmp_path / "driver_artifacts", tmp_path / "experiment"
    staging.mkdir()
    storage = SimpleNamespace(syncer=_FilesystemSyncer(pyarrow.fs.LocalFileSystem()),
                              experiment_driver_staging_path=str(staging), experiment_fs_path=str(uploaded_to))
    upload = {"done": False}

    def slow_upload() -> None:
        time.sleep(0.5)
        upload["done"] = True

    def save() -> None:   # what Ray's searcher does: a temp file, renamed into place
        seen.append(upload["done"])
        temp = staging / ".tmp-searcher-state.pkl"
        temp.write_bytes(b"state")
        temp.replace(staging / "searcher-state.pkl")

    try:
        ray_patches.write_snapshots_after_uploads()
        manager = _ExperimentCheckpointManager(storage=storage, checkpoint_period=0)
        storage.syncer._launch_sync_process((slow_upload, {}))   # the last snapshot's upload, under way
        seen: list[bool] = []
        manager.sync_up_experiment_state(save_fn=save, wait=True)
        assert seen == [True]
        assert sorted(p.name for p in uploaded_to.iterdir()) == ["searcher-state.pkl"]   # and it was uploaded
    finally:
        _ExperimentCheckpointManager.sync_up_experiment_state = original
