"""One sweep trial: the thin adapter from a Ray Tune config to weightmom.train."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ray import tune

from sweeps.space import SearchSpace
from weightmom.training import TrainResult, train

CHECKPOINT_FILE = "model.pt"


def run_trial(config: dict, space: SearchSpace) -> None:
    """Train with `config`; report every epoch with the sparse model as the trial's checkpoint.

    Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU share, and the default
    device "auto" picks it up.
    """

    def epoch_end(metrics: dict, result: TrainResult) -> None:
        with tempfile.TemporaryDirectory() as folder:
            result.save(str(Path(folder) / CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    train(space.train_config(config), epoch_end=epoch_end, progress=False)
