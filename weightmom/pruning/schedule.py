"""When to prune and how dense the network should be at that moment.

Kept apart from *which* weights go (the pruners) and *where* (allocation), as
RigL does, so each piece can be tested and swept on its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """Zhu and Gupta (2017): d(t) = D + (D0 - D) * (1 - (t - t0) / (t1 - t0)) ** 3, with D0 = 1.

    `t` is counted in the pruner's unit (completed epochs or optimizer steps).
    Density is `initial_density` up to `start` and exactly `final_density` from `end` on
    (a chain's later steps start where the step before ended, weightmom.chain).
    """

    final_density: float
    start: float
    end: float
    every: float = 1
    initial_density: float = 1.0

    def density_at(self, t: float) -> float:
        if t <= self.start and self.end > self.start:
            return self.initial_density
        if t >= self.end:
            return self.final_density
        progress = (t - self.start) / (self.end - self.start)
        return self.final_density + (self.initial_density - self.final_density) * (1.0 - progress) ** 3

    def is_update(self, t: float) -> bool:
        """True at every `every`-th unit after `start`, and always at `end`."""
        if t == self.end:
            return True
        return self.start < t < self.end and (t - self.start) % self.every == 0
