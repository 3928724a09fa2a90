"""WeightMom: iterative momentum-based weight pruning (arXiv 2208.05970) and its baselines.

A plain PyTorch library: no Ray, Optuna or MLflow here (those live in `sweeps`).

    from weightmom import TrainConfig, train
    result = train(TrainConfig(method="weightmom", density=0.05))
"""

from weightmom.config import TrainConfig, resolve_config
from weightmom.errors import TrainingDiverged, UsageError
from weightmom.training import TrainResult, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "UsageError", "evaluate", "resolve_config", "train"]
