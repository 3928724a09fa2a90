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


def random_mask(shape: torch.Size, keep: int, generator: torch.Generator) -> torch.Tensor:
    """A float 0/1 mask (on the CPU) with exactly `keep` ones at uniformly random places."""
    n = shape.numel()
    flat = torch.zeros(n)
    flat[torch.randperm(n, generator=generator)[:keep]] = 1
    return flat.view(shape)


class RandomPruner(Pruner):
    """Each layer keeps a uniformly random `density` fraction, seeded by the run's seed."""

    config: RandomConfig

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        generator = torch.Generator().manual_seed(context.seed)
        masks = []
        for layer in self.layers:
            keep = max(1, round(self.config.density * layer.weight.numel()))
            masks.append(random_mask(layer.weight.shape, keep, generator).to(layer.mask))
        self.set_masks(masks)


@dataclass(frozen=True)
class DenseConfig:
    density: float = 1.0

    def __post_init__(self) -> None:
        require(self.density == 1.0, f"method 'dense' keeps every weight; density must be 1 (got {self.density})")
