"""The Ray Tune scheduler a space's early stopping asks for: FIFO, ASHA on one objective, MO-ASHA on several."""

from __future__ import annotations

from dataclasses import dataclass

from sweeps.records.requeue import trial_params
from sweeps.search.live_trials import LiveASHAScheduler, LiveFIFOScheduler
from sweeps.search.moasha import MOASHAScheduler
from sweeps.space.search_space import SearchSpace
from weightmom.contract import metric, metric_target


@dataclass(frozen=True)
class TargetValue:
    """A trial's final value of `metric` read from its config (its target density): MO-ASHA ranks it on this
    before its schedule gets there. A class, not a closure: the scheduler is pickled into Ray's snapshot."""

    space: SearchSpace
    metric: str = "density"   # the default: instances pickled as the density-only TargetDensity lack the field

    def __call__(self, config: dict) -> float:
        return metric_target(self.metric, self.space.train_config(trial_params(config)))


def target_readers(space: SearchSpace) -> dict[str, TargetValue]:
    """The objectives whose final value a trial's config tells (the objective table's `target`)."""
    return {m: TargetValue(space, m) for m in space.metrics if (entry := metric(m)) is not None and entry.target}


def make_scheduler(space: SearchSpace):
    """MO-ASHA over every objective when there are two or more (ASHA on accuracy alone starves the sparse
    end of the front), ASHA on the one objective otherwise; FIFO when early stopping is off."""
    if not space.early_stopping.enabled:
        return LiveFIFOScheduler()
    first = space.objectives[0]
    grace = min(space.early_stopping.grace_period, space.epochs)
    # Our own epoch counter: Ray's training_iteration keeps counting across a restarted trial.
    if len(space.objectives) >= 2:
        # A chain is judged at its step ends, each on what it measured there (a step ends at its exact density).
        plan = space.chain_plan
        at = [plan.step_end(k) for k in range(len(plan.densities) - 1)] if plan else []
        return MOASHAScheduler(space.metrics, space.modes, time_attr="epoch", max_t=space.epochs, grace_period=grace,
                               reduction_factor=space.early_stopping.reduction_factor,
                               final_values={} if plan else target_readers(space),
                               promotion=space.early_stopping.promotion, rungs_at=at)
    return LiveASHAScheduler(metric=first.metric, mode=first.mode, time_attr="epoch", max_t=space.epochs,
                             grace_period=grace, reduction_factor=space.early_stopping.reduction_factor)
