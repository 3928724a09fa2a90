"""N2NSkip (Subramaniam and Sharma 2020): prune at initialisation, add sparse skips, same non-zero budget.

This project's reading (method.md): the network's own layers are masked once at
initialisation by the `base` rule (SNIP saliency or random), computed before
any skip exists; then sparse, learnable skip connections join every pair of
prunable layers `hops` apart (weightmom.skips). The total of non-zero weights,
network plus skips, is D times the network's prunable size; `skip_fraction` of
it goes to the skips, in proportion to their sizes and capped at their dense
size, and the rest (with whatever the cap frees) to the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightmom.methods import N2NSkipConfig
from weightmom.pruning.base import GlobalRanking, PrunableLayer, Pruner, TrainingContext, prunable_layers
from weightmom.pruning.random_mask import random_mask
from weightmom.pruning.snip import snip_saliency
from weightmom.skips import SkipConnection, attach_skips, find_skips


@dataclass(frozen=True)
class Budget:
    """Non-zero weights: for the network's own layers (together), and for each skip."""

    network: int
    skips: list[int]


def apportion(total: int, sizes: Sequence[int]) -> list[int]:
    """Split `total` (at most sum(sizes)) in proportion to `sizes`, exactly: largest remainders get the rest."""
    if not sizes:
        return []
    whole = sum(sizes)
    shares = [total * size / whole for size in sizes]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(sizes)), key=lambda k: (counts[k] - shares[k], k))
    for k in by_remainder[:total - sum(counts)]:
        counts[k] += 1
    return counts


def split_budget(density: float, network_size: int, skip_sizes: Sequence[int], skip_fraction: float) -> Budget:
    """method.md's budget: D x network size in all, `skip_fraction` of it to the skips, capped at their size."""
    total = max(1, round(density * network_size))
    to_skips = min(round(skip_fraction * total), sum(skip_sizes), total - 1)
    return Budget(total - to_skips, apportion(to_skips, skip_sizes))


class N2NSkipPruner(Pruner):
    config: N2NSkipConfig

    def prepare(self, model: nn.Module, context: TrainingContext) -> None:
        """Mask the network as it is (the preliminary pruning), then attach the skips."""
        specs = find_skips(model, context.sample_input, self.config.hops)
        own = prunable_layers(model, context.sample_input)
        network_size = sum(layer.weight.numel() for layer in own)
        self.budget = split_budget(self.config.density, network_size, [s.size for s in specs],
                                   self.config.skip_fraction)
        self._generator = torch.Generator().manual_seed(context.seed)
        self._network_masks = dict(zip([layer.name for layer in own], self._base_masks(model, own, context)))
        self.skips: list[SkipConnection] = attach_skips(model, specs)

    def _base_masks(self, model: nn.Module, own: list[PrunableLayer], context: TrainingContext) -> list[torch.Tensor]:
        keep = self.budget.network
        if self.config.base == "snip":
            return GlobalRanking.of(snip_saliency(model, own, context, batches=1)).top_masks(keep)
        density = keep / sum(layer.weight.numel() for layer in own)   # random: every layer at the same density
        return [random_mask(layer.weight.shape, max(1, round(density * layer.weight.numel())), self._generator)
                for layer in own]

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        """The network's masks from prepare, seeded random masks on the skips; layers listed network first."""
        if not hasattr(self, "skips"):
            raise RuntimeError("n2nskip: call pruner.prepare(model, context) before building the optimizer")
        by_weight = {id(layer.weight): layer for layer in self.layers}
        if any(id(skip.proj.weight) not in by_weight for skip in self.skips):
            raise RuntimeError("n2nskip: a skip connection did not run in the forward pass")
        skips = [by_weight.pop(id(skip.proj.weight)) for skip in self.skips]
        network = list(by_weight.values())   # what is left, still in forward order
        self.layers = network + skips
        masks = [self._network_masks[layer.name] for layer in network]
        masks += [random_mask(layer.weight.shape, keep, self._generator)
                  for layer, keep in zip(skips, self.budget.skips)]
        self.set_masks([m.to(layer.mask) for m, layer in zip(masks, self.layers)])
