"""Pruning methods behind one interface: how each method of weightmom.methods prunes, by the same name."""

from __future__ import annotations

from typing import Any

from weightmom.methods import (
    METHODS,
    DenseConfig,
    GsmConfig,
    N2NSkipConfig,
    RandomConfig,
    SnipConfig,
    WeightMomConfig,
    check_density,
    method_knob_types,
    pruner_config,
)
from weightmom.pruning.base import PrunableLayer, Pruner, TrainingContext, prunable_layers, select_survivors
from weightmom.pruning.gsm import GsmPruner
from weightmom.pruning.n2nskip import N2NSkipPruner
from weightmom.pruning.random_mask import RandomPruner
from weightmom.pruning.schedule import CubicSchedule
from weightmom.pruning.snip import SnipPruner
from weightmom.pruning.weightmom import WeightMomPruner

__all__ = [
    "METHODS", "PRUNERS", "CubicSchedule", "DenseConfig", "GsmConfig", "GsmPruner", "N2NSkipConfig",
    "N2NSkipPruner", "PrunableLayer", "Pruner", "RandomConfig", "RandomPruner", "SnipConfig", "SnipPruner",
    "TrainingContext", "WeightMomConfig", "WeightMomPruner", "check_density", "create_pruner", "method_knob_types",
    "pruner_config", "prunable_layers", "select_survivors",
]

PRUNERS: dict[str, type[Pruner]] = {
    "dense": Pruner,
    "weightmom": WeightMomPruner,
    "gmp": WeightMomPruner,   # WeightMom with window 1 and threshold inf: one code path
    "snip": SnipPruner,
    "gsm": GsmPruner,
    "random": RandomPruner,
    "n2nskip": N2NSkipPruner,
}


def create_pruner(method: str, config: Any) -> Pruner:
    return PRUNERS[method](config)
