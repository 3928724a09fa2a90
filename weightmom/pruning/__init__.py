"""Pruning methods behind one interface, and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from weightmom.config import build
from weightmom.errors import UsageError, require
from weightmom.pruning.base import PrunableLayer, Pruner, TrainingContext, prunable_layers, select_survivors
from weightmom.pruning.gsm import GsmConfig, GsmPruner
from weightmom.pruning.n2nskip import N2NSkipConfig, N2NSkipPruner
from weightmom.pruning.random_mask import DenseConfig, RandomConfig, RandomPruner
from weightmom.pruning.schedule import CubicSchedule
from weightmom.pruning.snip import SnipConfig, SnipPruner
from weightmom.pruning.weightmom import WeightMomConfig, WeightMomPruner

__all__ = [
    "METHODS", "CubicSchedule", "DenseConfig", "GsmConfig", "GsmPruner", "N2NSkipConfig", "N2NSkipPruner",
    "PrunableLayer", "Pruner",
    "RandomConfig", "RandomPruner", "SnipConfig", "SnipPruner", "TrainingContext", "WeightMomConfig",
    "WeightMomPruner", "create_pruner", "pruner_config", "prunable_layers", "select_survivors",
]


@dataclass(frozen=True)
class Method:
    config: type
    pruner: Callable[[Any], Pruner]
    fixed: dict[str, Any]   # settings that define the method and may not be overridden


METHODS: dict[str, Method] = {
    "dense": Method(DenseConfig, Pruner, {}),
    "weightmom": Method(WeightMomConfig, WeightMomPruner, {}),
    "gmp": Method(WeightMomConfig, WeightMomPruner, {"window": 1.0, "beta": None, "threshold": float("inf")}),
    "snip": Method(SnipConfig, SnipPruner, {}),
    "gsm": Method(GsmConfig, GsmPruner, {}),
    "random": Method(RandomConfig, RandomPruner, {}),
    "n2nskip": Method(N2NSkipConfig, N2NSkipPruner, {}),
}


def pruner_config(method: str, density: float, options: dict[str, Any] | None = None) -> Any:
    """The validated config of `method` at target `density`, with `options` (pruner.* keys) applied."""
    require(method in METHODS, f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    spec, options = METHODS[method], dict(options or {})
    require("density" not in options, "set the target density with --density, not pruner.density")
    for key in spec.fixed:
        if key in options:
            raise UsageError(f"pruner.{key} is fixed for method {method!r}; use --method weightmom to change it")
    return build(spec.config, {"density": density, **options, **spec.fixed}, prefix="pruner.")


def create_pruner(method: str, config: Any) -> Pruner:
    return METHODS[method].pruner(config)
