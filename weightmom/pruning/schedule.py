"""When to prune and how dense the network should be at that moment.

Kept apart from *which* weights go (the pruners) and *where* (allocation), as
RigL does, so each piece can be tested and swept on its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """Zhu and Gupta (2017): d(t) = D + (1 - D) * (1 - (t - t0) / (t1 - t0)) ** 3.

    `t` is counted in the pruner's unit (completed epochs or optimizer steps).
    Density is 1.0 up to `start` and exactly `final_density` from `end` on.
    """

    final_density: float
    start: float
    end: float
    every: float = 1

    def density_at(self, t: float) -> float:
        if t <= self.start and self.end > self.start:
            return 1.0
        if t >= self.end:
            return self.final_density
        progress = (t - self.start) / (self.end - self.start)
        return self.final_density + (1.0 - self.final_density) * (1.0 - progress) ** 3

    def is_update(self, t: float) -> bool:
        """True at every `every`-th unit after `start`, and always at `end`."""
        if t == self.end:
            return True
        return self.start < t < self.end and (t - self.start) % self.every == 0
