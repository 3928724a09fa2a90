"""WeightMom: iterative momentum-based weight pruning (arXiv 2208.05970) and its baselines.

A plain PyTorch library: no Ray, Optuna or MLflow here (those live in `sweeps`).

    from weightmom import TrainConfig, train
    result = train(TrainConfig(method="weightmom", density=0.05))

Configs load without torch (a bad config fails in milliseconds); `train` and the rest import it when
first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from weightmom.config import TrainConfig, resolve_config
from weightmom.errors import TrainingDiverged, UsageError

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "UsageError", "evaluate", "resolve_config", "train"]
_FROM_TRAINING = ("TrainResult", "evaluate", "train")


def __getattr__(name: str) -> Any:
    if name in _FROM_TRAINING:
        return getattr(importlib.import_module("weightmom.training"), name)
    raise AttributeError(f"module 'weightmom' has no attribute {name!r}")
