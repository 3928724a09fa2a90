"""One sweep trial: the thin adapter from a Ray Tune config to weightmom.train."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from sweeps.records.requeue import requeued_checkpoint, trial_params
from sweeps.records.results import MODEL_FILE
from sweeps.space.search_space import SearchSpace
from weightmom.training import TrainResult, train

TRAINING_STATE_FILE = "state.pt"   # the full training state: what a retried or resumed trial continues from
CHAIN_KEEP = "chain_keep"   # a chain's checkpoint score: step k's end scores k + 1, any other 0
FINAL_RESULT_FILE = "final.json"   # in the last checkpoint only: the result a restored finished trial reports again
# A dense training state is several times the sparse model; on a GPU sweep writing it to shared
# storage every epoch would cost more than it saves. Tests set this to 0.
CHECKPOINT_EVERY_S = float(os.environ.get("WEIGHTMOM_CHECKPOINT_EVERY_S", "120"))


def run_trial(config: dict, space: SearchSpace) -> None:
    """Train with `config`, continuing from the trial's last checkpoint if Ray restored one, else from
    the checkpoint of the trial it re-runs (a recovered sweep's re-queued trial), if any.

    Reports every epoch; checkpoints the training state every CHECKPOINT_EVERY_S and the
    pruned model at the end. Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU share, and
    the default device "auto" picks it up.
    """
    train_config = space.train_config(trial_params(config))
    last_checkpoint = time.monotonic()
    if report_again(tune.get_checkpoint()):
        return
    resume = restored_state(tune.get_checkpoint()) or restored_state(requeued_checkpoint(config))
    # Where the trial ran and what it continued from: the evidence for placement and retries.
    placement = {"node_id": ray.get_runtime_context().get_node_id(),
                 "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                 "resumed_from_epoch": resume["epoch"] if resume else 0}

    def epoch_end(metrics: dict, result: TrainResult) -> None:
        nonlocal last_checkpoint
        metrics |= placement | {"num_classes": result.num_classes}
        final = metrics["epoch"] == train_config.total_epochs
        step_end = bool(metrics.get("step_end"))   # a chain's step: its model is a front point of its own
        if "chain_step" in metrics:   # Ray keeps the checkpoints that score highest: every step's, and the latest
            metrics[CHAIN_KEEP] = metrics["chain_step"] + 1 if step_end else 0
        if not (final or step_end) and time.monotonic() - last_checkpoint < CHECKPOINT_EVERY_S:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            result.save(str(Path(folder) / MODEL_FILE))
            if final:
                (Path(folder) / FINAL_RESULT_FILE).write_text(json.dumps(metrics, default=float))
            else:
                result.save_state(str(Path(folder) / TRAINING_STATE_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        last_checkpoint = time.monotonic()

    train(train_config, epoch_end=epoch_end, progress=False, resume=resume)


def report_again(checkpoint: tune.Checkpoint | None) -> bool:
    """Report the final result again when Ray restored the trial from its last checkpoint: the driver died
    after the trial's last report and before it ended the trial. Training again from scratch would waste the
    whole run (that checkpoint holds the model, not a training state). Whether it did."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        path = Path(folder) / FINAL_RESULT_FILE
        if not path.exists():
            return False
        metrics = json.loads(path.read_text())
        metrics |= {"node_id": ray.get_runtime_context().get_node_id(), "resumed_from_epoch": metrics["epoch"]}
        with tempfile.TemporaryDirectory() as copy:   # reported as a new checkpoint: Ray persists its own copy
            shutil.copytree(folder, copy, dirs_exist_ok=True)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(copy))
    return True


def restored_state(checkpoint: tune.Checkpoint | str | None) -> dict | None:
    """The training state in a checkpoint (a path or URI works too); None when there is none."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str):
        checkpoint = tune.Checkpoint(checkpoint)
    with checkpoint.as_directory() as folder:
        path = Path(folder) / TRAINING_STATE_FILE
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
