"""Chains: one run walks down a density grid, and the end of each step is a model of its own.

A chain run trains `epochs` epochs to `density` as any run does, then takes `chain_epochs` more per density
of `chain`: in the step's first epoch the pruner goes from the previous density to the next (cubic, in its
own unit), the learning rate restarts at `chain_lr` times its peak with a cosine to zero within the step.
So n grid points cost epochs + (n - 1) * chain_epochs epochs, against n * epochs for n separate runs
(AST, NeurIPS 2022, and ELSA, 2023, get several sparsities from one training the same way).

Plain arithmetic on the config, kept apart from the loop and the pruners so each can be tested alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CHAIN_METHODS = ("weightmom", "gmp")   # the iterative methods: they can prune further from where they are


@dataclass(frozen=True)
class ChainPlan:
    """When each step of a chain starts and ends, in epochs, and the density it ends at."""

    densities: tuple[float, ...]   # the first is the run's `density`, reached by the ordinary schedule
    base_epochs: int               # epochs to the first density
    epochs_per_step: int

    @property
    def total_epochs(self) -> int:
        return self.base_epochs + self.epochs_per_step * (len(self.densities) - 1)

    def step_of(self, epoch: int) -> int:
        """The step epoch `epoch` (1-based) belongs to: 0 up to base_epochs, then 1, 2, ..."""
        if epoch <= self.base_epochs:
            return 0
        return 1 + (epoch - self.base_epochs - 1) // self.epochs_per_step

    def step_start(self, step: int) -> int:
        """Epochs completed when step `step` (>= 1) begins."""
        return self.base_epochs + (step - 1) * self.epochs_per_step

    def step_end(self, step: int) -> int:
        """The epoch that ends step `step`: its checkpoint."""
        return self.base_epochs if step == 0 else self.step_start(step) + self.epochs_per_step

    def ends_step(self, epoch: int) -> bool:
        return epoch == self.step_end(self.step_of(epoch))


def plan_of(densities: Sequence[float], base_epochs: int, epochs_per_step: int) -> ChainPlan | None:
    """The plan of a run whose chain is `densities` after its own density (None: not a chain)."""
    return ChainPlan(tuple(densities), base_epochs, epochs_per_step) if len(densities) > 1 else None


def chain_lr(base: Callable[[int], float], plan: ChainPlan, steps_per_epoch: int,
             scale: float) -> Callable[[int], float]:
    """The per-step lr factor: `base` for the first step's epochs, then `scale` with a cosine to zero within
    each further step (a restart at a fraction of the peak: a full-lr restart diverged for an SGD config
    at lr 0.59 in the issue's first try)."""
    first = plan.base_epochs * steps_per_epoch
    length = plan.epochs_per_step * steps_per_epoch

    def multiplier(step: int) -> float:
        if step < first:
            return base(step)
        within = (step - first) % length
        return scale * 0.5 * (1.0 + math.cos(math.pi * within / length))

    return multiplier
