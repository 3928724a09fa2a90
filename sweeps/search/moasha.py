"""MO-ASHA: asynchronous successive halving that ranks a rung by non-dominated sorting over every objective.

ASHA ranks the trials at a rung by the primary objective alone. With (val_accuracy up, density down) that
compares a 2% network with a 20% one on accuracy, and sparse networks, less accurate by nature, are the
ones stopped: the sparse end of the front starves. MO-ASHA (Schmucker et al. 2021, arXiv 2106.12639) ranks a
rung by Pareto fronts instead, ties inside a front broken by crowding distance (boundary points first), and
keeps ASHA's asynchronous rule: a trial reaching a rung continues if it is in the top 1/eta of the results
recorded there so far (itself included), else it stops. The sparsest trial at a rung is always on its first
front, so a sparse network is only ever stopped by one at least as sparse and at least as accurate.

A second rule, `undominated`, keeps more: a trial continues unless more than 1/eta^2 of the points recorded at
its rung dominate its point. The top-1/eta rule stops two good trials in three even when every trial is good;
this one stops only what the rung's own results show to be worse on every objective (docs/search.md: with a
sampler that proposes good configs it needs a third of the compute that the top-1/eta rule needs).

The ranking lives in plain functions (`rung_order`, `promote`, `promote_undominated`, over the Pareto math of
sweeps.basis.dominance) so that the replay simulator (benchmarks/replay.py) runs exactly the rule the sweeps run.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.basis.dominance import Point, crowding, dominates, pareto_ranks
from sweeps.search.live_trials import LiveTrialsFirst

__all__ = ["PROMOTIONS", "MOASHAScheduler", "Point", "Rungs", "crowding", "dominates", "milestones", "pareto_ranks",
           "promote", "promote_undominated", "rung_order"]

def rung_order(points: Sequence[Point]) -> list[int]:
    """Indices best first: by Pareto rank, then by crowding distance (larger first), then by index."""
    ranks = pareto_ranks(points)
    spread: dict[int, float] = {}
    for rank in set(ranks):
        spread.update(crowding(points, [i for i, r in enumerate(ranks) if r == rank]))
    return sorted(range(len(points)), key=lambda i: (ranks[i], -spread[i], i))


def promote(recorded: Sequence[Point], new: Point, eta: float) -> bool:
    """ASHA's asynchronous rule over Pareto ranks: `new` continues if among the top 1/eta of recorded + new.

    The first trial at a rung always continues, as in ASHA (there is nothing to compare it with).
    """
    if not recorded:
        return True
    points = [*recorded, new]
    keep = max(1, math.floor(len(points) / eta))
    return len(points) - 1 in rung_order(points)[:keep]


def promote_undominated(recorded: Sequence[Point], new: Point, eta: float) -> bool:
    """`new` continues unless more than 1/eta^2 of the points recorded at its rung dominate it."""
    return sum(dominates(p, new) for p in recorded) <= math.floor(len(recorded) / eta**2)


# The rule behind each name of sweeps.basis.registry.PROMOTIONS (a space's early_stopping.promotion).
PROMOTIONS = {"top": promote, "undominated": promote_undominated}


def milestones(grace_period: int, max_t: int, eta: float) -> list[int]:
    """The rungs, as ASHA places them: grace_period * eta^k below max_t."""
    out, t = [], float(grace_period)
    while t < max_t:
        out.append(int(round(t)))
        t *= eta
    return out


@dataclass
class Rungs:
    """The recorded points per milestone, and the rule that decides at each: the scheduler's whole state."""

    grace_period: int
    max_t: int
    eta: float
    recorded: dict[int, dict[str, Point]] = field(default_factory=dict)
    promotion: str = "top"   # a key of PROMOTIONS (a class default too: Rungs pickled before it existed)
    at: tuple[int, ...] = ()   # the milestones, when not ASHA's (a chain's step ends)

    def __post_init__(self) -> None:
        for milestone in self.at or milestones(self.grace_period, self.max_t, self.eta):
            self.recorded.setdefault(milestone, {})

    def due(self, trial_id: str, t: float) -> int | None:
        """The highest milestone `t` has passed that this trial has no point at yet (None: nothing to decide)."""
        return next((m for m in sorted(self.recorded, reverse=True)
                     if t >= m and trial_id not in self.recorded[m]), None)

    def on_result(self, trial_id: str, t: float, point: Point) -> bool:
        """Record `point` at the milestone `due`; False: stop the trial."""
        milestone = self.due(trial_id, t)
        if milestone is None:
            return True
        rung = self.recorded[milestone]
        go_on = PROMOTIONS[self.promotion](list(rung.values()), point, self.eta)
        rung[trial_id] = point
        return go_on


class MOASHAScheduler(LiveTrialsFirst, FIFOScheduler):
    """A Ray Tune scheduler running `Rungs` over all of a sweep's objectives (metrics with their modes).

    `final_values` names the objectives whose final value a trial's config already tells (the target density),
    each with the function that reads it: a trial is ranked on that value at every rung, so a network that
    will be 2% dense is judged as one even at a rung before its pruning schedule has got there.
    """

    _final_values: Mapping[str, Callable[[dict], float]] = types.MappingProxyType({})   # snapshots of old versions

    def __init__(self, metrics: Sequence[str], modes: Sequence[str], time_attr: str = "epoch", max_t: int = 100,
                 grace_period: int = 1, reduction_factor: float = 3.0,
                 final_values: Mapping[str, Callable[[dict], float]] | None = None, promotion: str = "top",
                 rungs_at: Sequence[int] = ()) -> None:
        super().__init__()
        if len(metrics) != len(modes) or not metrics or any(m not in ("max", "min") for m in modes):
            raise ValueError("MOASHAScheduler needs one mode (max or min) per metric")
        self._metrics, self._signs = list(metrics), [1.0 if m == "max" else -1.0 for m in modes]
        self._final_values = dict(final_values or {})
        self._time_attr = time_attr
        self._rungs = Rungs(grace_period, max_t, reduction_factor, promotion=promotion, at=tuple(rungs_at))
        self._stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True   # the objectives are the scheduler's own: Tune's single metric does not apply

    def point(self, result: dict, config: dict | None = None) -> Point | None:
        if self._time_attr not in result or any(m not in result for m in self._metrics):
            return None
        final = {m: read(config) for m, read in self._final_values.items()} if config is not None else {}
        return tuple(s * float(final.get(m, result[m])) for m, s in zip(self._metrics, self._signs))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._time_attr not in result or self._rungs.due(trial.trial_id, result[self._time_attr]) is None:
            return TrialScheduler.CONTINUE   # between rungs: no point to build (reading a target costs a config)
        point = self.point(result, trial.config)
        if point is None:
            return TrialScheduler.CONTINUE
        if self._rungs.on_result(trial.trial_id, result[self._time_attr], point):
            return TrialScheduler.CONTINUE
        self._stopped += 1
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        sizes = ", ".join(f"{m}: {len(r)}" for m, r in sorted(self._rungs.recorded.items()))
        return f"MO-ASHA over {', '.join(self._metrics)}: rungs {{{sizes}}}, {self._stopped} stopped"
