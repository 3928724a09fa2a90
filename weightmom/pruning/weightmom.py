"""WeightMom: iterative pruning on a momentum of weight magnitudes (method.md).

GMP is this class with window = 1 and threshold = inf: the same code path.
"""

from __future__ import annotations

import torch
from torch import nn

from weightmom.methods import WeightMomConfig
from weightmom.pruning.allocation import allocate, allocate_channels
from weightmom.pruning.base import Pruner, TrainingContext, select_survivors
from weightmom.pruning.schedule import CubicSchedule


class WeightMomPruner(Pruner):
    """Observe |w| into a momentum every few steps; prune the lowest-momentum weights on a schedule."""

    config: WeightMomConfig

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        self.config = self.config.resolve(context.epochs, context.steps_per_epoch)
        c = self.config
        self.schedule = CubicSchedule(c.density, c.prune_start, c.prune_end, c.prune_every)
        self.phases = [self.schedule, *chain_phases(context, c)]
        # float32 on the weight's device, updated in place: no allocation per observation.
        self.momentum = [torch.zeros_like(l.weight, dtype=torch.float32) for l in self.layers]
        self._scratch = [torch.zeros_like(m) for m in self.momentum]
        self._observed = False
        self._finals_done = 0   # phases whose final prune (to their exact density) has happened
        self._step = 0
        self.fixed = [False] * len(self.layers)
        self.fixed[0] = self.fixed[0] or not c.prune_first
        self.fixed[-1] = self.fixed[-1] or not c.prune_last
        if self.channel_granularity:   # groups holding the first layer's rows or the last layer's inputs
            first = self.channels.touches(self.layers[0].name, 0)
            last = self.channels.touches(self.layers[-1].name, 1)
            self.channel_fixed = [(f and not c.prune_first) or (la and not c.prune_last) for f, la in zip(first, last)]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": [m.clone() for m in self.momentum],
                "observed": self._observed, "step": self._step, "finals_done": self._finals_done}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for momentum, saved in zip(self.momentum, state["momentum"]):
            momentum.copy_(saved)
        self._observed, self._step = state["observed"], state["step"]
        # A state saved before chains holds one phase's flag.
        self._finals_done = int(state["finals_done"] if "finals_done" in state else state["final_done"])

    def observe(self) -> None:
        """m <- beta * m + (1 - beta) * |w|; m starts at |w|."""
        beta = self.config.beta
        with torch.no_grad():
            for layer, momentum, scratch in zip(self.layers, self.momentum, self._scratch):
                torch.abs(layer.weight, out=scratch)
                if self._observed:
                    momentum.mul_(beta).add_(scratch, alpha=1.0 - beta)
                else:
                    momentum.copy_(scratch)
        self._observed = True

    def after_step(self) -> None:
        self._step += 1
        if self._step % self.config.observe_every == 0:
            self.observe()
        if self.config.unit == "step":
            self._maybe_prune(self._step)

    def on_epoch_end(self, epoch: int) -> None:
        if self.config.unit == "epoch":
            self._maybe_prune(epoch)

    def _maybe_prune(self, t: float) -> None:
        phase = max((k for k, p in enumerate(self.phases) if k == 0 or t > p.start), default=0)
        schedule = self.phases[phase]
        final = t >= schedule.end
        # The final prune happens at the first t >= prune_end, even when t never equals it
        # (prune_end 2.5 epochs, or 0: the loop's first call is t = 1).
        if schedule.is_update(t) or (final and self._finals_done <= phase):
            self.prune_to(schedule.density_at(t), final=final)
            if final:
                self._finals_done = phase + 1

    def prune_to(self, density: float, final: bool = False) -> None:
        """Allocate `density` to layers and mask the lowest-momentum eligible weights."""
        if not self._observed:
            self.observe()
        if self.channel_granularity:
            self._prune_channels(density, final)
            return
        c = self.config
        alive = [layer.mask.bool() for layer in self.layers]
        keep = allocate(c.allocation, density, [l.weight.shape for l in self.layers], self.fixed,
                        importance_scaling=c.importance_scaling, scores=self.momentum, alive=alive)
        threshold = float("inf") if final else c.threshold
        self.set_masks([select_survivors(m, l.mask, k, threshold)
                        for l, m, k in zip(self.layers, self.momentum, keep)])

    def _prune_channels(self, density: float, final: bool) -> None:
        """The same steps on channel groups: a channel's score is the L2 norm of the momentum over all its
        weights (with window 1, the group's L2 magnitude: GMP); the allocation rule shares out channels and
        the channel fraction is set so that `density` of the prunable weights stays."""
        c, groups = self.config, self.channels
        scores = groups.scores({layer.name: m for layer, m in zip(self.layers, self.momentum)}, "l2")
        alive = self.channel_alive
        sizes, shapes, counts = groups.weight_sizes(), groups.root_shapes(), [g.size for g in groups.groups]

        def keep_at(s: float) -> list[int]:
            return allocate_channels(c.allocation, s, counts, sizes, shapes, self.channel_fixed,
                                     importance_scaling=c.importance_scaling, scores=scores, alive=alive)

        keep = groups.keep_for_density(density, keep_at, alive)
        threshold = float("inf") if final else c.threshold
        self.set_channel_masks([select_survivors(score, a.float(), k, threshold).bool()
                                for score, a, k in zip(scores, alive, keep)])


def chain_phases(context: TrainingContext, config: WeightMomConfig) -> list[CubicSchedule]:
    """A chain run's further steps as schedules in the pruner's unit: each prunes from the density before it
    to its own over the step's first epoch (weightmom.chain)."""
    plan = context.chain
    if plan is None:
        return []
    per_epoch = 1 if config.unit == "epoch" else context.steps_per_epoch
    return [CubicSchedule(density, plan.step_start(k) * per_epoch, (plan.step_start(k) + 1) * per_epoch,
                          min(config.prune_every, per_epoch), initial_density=before)
            for k, (before, density) in enumerate(zip(plan.densities, plan.densities[1:]), start=1)]
