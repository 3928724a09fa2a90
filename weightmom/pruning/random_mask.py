"""Random pruning at initialisation: the floor every method must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from weightmom.errors import require
from weightmom.pruning.base import Pruner, TrainingContext


@dataclass(frozen=True)
class RandomConfig:
    density: float = 0.1

    def __post_init__(self) -> None:
        require(0 < self.density <= 1, f"density must be in (0, 1] (got {self.density})")


class RandomPruner(Pruner):
    """Each layer keeps a uniformly random `density` fraction, seeded by the run's seed."""

    config: RandomConfig

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        generator = torch.Generator().manual_seed(context.seed)
        masks = []
        for layer in self.layers:
            n = layer.weight.numel()
            keep = max(1, round(self.config.density * n))
            flat = torch.zeros(n, dtype=layer.mask.dtype)
            flat[torch.randperm(n, generator=generator)[:keep]] = 1
            masks.append(flat.view_as(layer.mask).to(layer.mask.device))
        self.set_masks(masks)


@dataclass(frozen=True)
class DenseConfig:
    density: float = 1.0

    def __post_init__(self) -> None:
        require(self.density == 1.0, f"method 'dense' keeps every weight; density must be 1 (got {self.density})")
