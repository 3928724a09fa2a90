"""SNIP (Lee et al. 2019): one shot at initialisation on saliency |g * w|."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from weightmom.methods import SnipConfig
from weightmom.pruning.base import GlobalRanking, PrunableLayer, Pruner, TrainingContext, select_survivors


def snip_saliency(model: nn.Module, layers: list[PrunableLayer], context: TrainingContext,
                  batches: int) -> list[torch.Tensor]:
    """|g * w| of each layer's weight, summed over the first `batches` mini-batches; BN statistics untouched."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    saliency = [torch.zeros_like(l.weight) for l in layers]
    for x, y in itertools.islice(context.batches(), batches):
        model.zero_grad(set_to_none=True)
        context.loss_fn(model(x), y).backward()
        with torch.no_grad():
            for s, layer in zip(saliency, layers):
                s.add_((layer.weight.grad * layer.weight).abs_())
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return saliency


class SnipPruner(Pruner):
    config: SnipConfig

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        saliency = snip_saliency(model, self.layers, context, self.config.batches)
        if self.channel_granularity:
            self._prune_channels(saliency)
            return
        total = sum(s.numel() for s in saliency)
        masks = GlobalRanking.of(saliency).top_masks(max(1, round(self.config.density * total)))
        self.set_masks([m.to(l.mask.dtype) for m, l in zip(masks, self.layers)])

    def _prune_channels(self, saliency: list[torch.Tensor]) -> None:
        """Channel granularity: a channel's saliency is the sum of |g * w| over all its weights; the global
        top channels stay, as many as keep the target fraction of prunable weights."""
        groups = self.channels
        scores = groups.scores({layer.name: s for layer, s in zip(self.layers, saliency)}, "sum")
        ranking = GlobalRanking.of(scores)

        def keep_at(s: float) -> list[int]:
            chosen = ranking.top_masks(max(1, round(s * groups.total_channels)))
            return [max(1, int(m.sum())) for m in chosen]

        keep = groups.keep_for_density(self.config.density, keep_at, self.channel_alive)
        self.set_channel_masks([select_survivors(score, a.float(), k).bool()
                                for score, a, k in zip(scores, self.channel_alive, keep)])
