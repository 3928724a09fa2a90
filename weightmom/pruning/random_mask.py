"""Random pruning at initialisation: the floor every method must beat."""

from __future__ import annotations

import torch
from torch import nn

from weightmom.methods import RandomConfig
from weightmom.pruning.base import Pruner, TrainingContext


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
        if self.channel_granularity:
            self._prune_channels(generator)
            return
        masks = []
        for layer in self.layers:
            keep = max(1, round(self.config.density * layer.weight.numel()))
            masks.append(random_mask(layer.weight.shape, keep, generator).to(layer.mask))
        self.set_masks(masks)

    def _prune_channels(self, generator: torch.Generator) -> None:
        """Channel granularity: every group keeps the same fraction of its channels, drawn at random, the
        fraction set so that the target fraction of prunable weights stays."""
        sizes = [g.size for g in self.channels.groups]
        keep = self.channels.keep_for_density(
            self.config.density, lambda s: [max(1, round(s * n)) for n in sizes], self.channel_alive)
        self.set_channel_masks([random_mask(torch.Size([n]), k, generator).bool() for n, k in zip(sizes, keep)])
