"""WeightMom: iterative pruning on a momentum of weight magnitudes (method.md).

GMP is this class with window = 1 and threshold = inf: the same code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from weightmom.errors import require
from weightmom.pruning.allocation import allocate
from weightmom.pruning.base import Pruner, TrainingContext, select_survivors
from weightmom.pruning.schedule import CubicSchedule

ALLOCATIONS = ("importance", "uniform", "global", "erk")
UNITS = ("epoch", "step")


@dataclass(frozen=True)
class WeightMomConfig:
    density: float = 0.1               # target fraction of prunable weights kept at prune_end
    window: float = 5.0                # EMA span in observations: beta = 1 - 2 / (window + 1)
    beta: float | None = None          # set directly instead of window
    observe_every: int | None = None   # optimizer steps between observations; None: once per epoch
    threshold: float = 1.0             # eligible if m < threshold * mean(m); inf: all eligible
    allocation: str = "importance"     # importance | uniform | global | erk
    importance_scaling: float = 1.0    # alpha in d_l ~ I_l ** -alpha (0 = uniform)
    prune_start: float = 0.0           # in `unit`s; density is 1.0 until then
    prune_end: float | None = None     # in `unit`s; None: 75% of training
    prune_every: float = 1.0           # in `unit`s
    unit: str = "epoch"                # epoch | step
    prune_first: bool = True           # prune the first prunable layer
    prune_last: bool = True            # prune the last prunable layer

    def __post_init__(self) -> None:
        require(0 < self.density <= 1, f"density must be in (0, 1] (got {self.density})")
        require(self.window >= 1, f"pruner.window must be >= 1 (got {self.window})")
        require(self.beta is None or 0 <= self.beta < 1, f"pruner.beta must be in [0, 1) (got {self.beta})")
        require(self.observe_every is None or self.observe_every >= 1,
                f"pruner.observe_every must be >= 1 (got {self.observe_every})")
        require(self.threshold > 0, f"pruner.threshold must be > 0 (got {self.threshold})")
        require(self.allocation in ALLOCATIONS,
                f"unknown pruner.allocation {self.allocation!r}; choose from: {', '.join(ALLOCATIONS)}")
        require(math.isfinite(self.importance_scaling),
                f"pruner.importance_scaling must be finite (got {self.importance_scaling})")
        require(self.unit in UNITS, f"unknown pruner.unit {self.unit!r}; choose from: {', '.join(UNITS)}")
        require(self.prune_start >= 0, f"pruner.prune_start must be >= 0 (got {self.prune_start})")
        require(self.prune_every > 0, f"pruner.prune_every must be > 0 (got {self.prune_every})")
        require(self.prune_end is None or self.prune_end >= self.prune_start,
                f"pruner.prune_end ({self.prune_end}) is before pruner.prune_start ({self.prune_start})")

    def resolve(self, epochs: int, steps_per_epoch: int) -> WeightMomConfig:
        """Fill the defaults that depend on the run's length, and check the schedule fits it."""
        horizon = epochs if self.unit == "epoch" else epochs * steps_per_epoch
        end = self.prune_end if self.prune_end is not None else max(self.prune_start, round(0.75 * horizon))
        require(end <= horizon, f"pruner.prune_end ({end}) is after the end of training ({horizon} {self.unit}s)")
        beta = self.beta if self.beta is not None else 1.0 - 2.0 / (self.window + 1.0)
        return replace(self, prune_end=float(end), beta=beta,
                       observe_every=self.observe_every or steps_per_epoch)


class WeightMomPruner(Pruner):
    """Observe |w| into a momentum every few steps; prune the lowest-momentum weights on a schedule."""

    config: WeightMomConfig

    def setup(self, model: nn.Module, context: TrainingContext) -> None:
        self.config = self.config.resolve(context.epochs, context.steps_per_epoch)
        c = self.config
        self.schedule = CubicSchedule(c.density, c.prune_start, c.prune_end, c.prune_every)
        # float32 on the weight's device, updated in place: no allocation per observation.
        self.momentum = [torch.zeros_like(l.weight, dtype=torch.float32) for l in self.layers]
        self._scratch = [torch.zeros_like(m) for m in self.momentum]
        self._observed = False
        self._final_done = False
        self._step = 0
        self.fixed = [False] * len(self.layers)
        self.fixed[0] = self.fixed[0] or not c.prune_first
        self.fixed[-1] = self.fixed[-1] or not c.prune_last

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": [m.clone() for m in self.momentum],
                "observed": self._observed, "step": self._step, "final_done": self._final_done}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for momentum, saved in zip(self.momentum, state["momentum"]):
            momentum.copy_(saved)
        self._observed, self._step, self._final_done = state["observed"], state["step"], state["final_done"]

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
        final = t >= self.schedule.end
        # The final prune happens at the first t >= prune_end, even when t never equals it
        # (prune_end 2.5 epochs, or 0: the loop's first call is t = 1).
        if self.schedule.is_update(t) or (final and not self._final_done):
            self.prune_to(self.schedule.density_at(t), final=final)
            self._final_done = self._final_done or final

    def prune_to(self, density: float, final: bool = False) -> None:
        """Allocate `density` to layers and mask the lowest-momentum eligible weights."""
        if not self._observed:
            self.observe()
        c = self.config
        alive = [layer.mask.bool() for layer in self.layers]
        keep = allocate(c.allocation, density, [l.weight.shape for l in self.layers], self.fixed,
                        importance_scaling=c.importance_scaling, scores=self.momentum, alive=alive)
        threshold = float("inf") if final else c.threshold
        self.set_masks([select_survivors(m, l.mask, k, threshold)
                        for l, m, k in zip(self.layers, self.momentum, keep)])
