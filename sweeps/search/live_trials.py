"""Ray Tune's FIFO choice of the next trial to start, over the live trials only, and the FIFO and ASHA
schedulers built on it.

Ray 2.60's FIFOScheduler (and ASHA, and MO-ASHA, which inherit it) scans every trial the experiment ever
added, twice, on every step of the controller, to find a PENDING or PAUSED one: a cost per step that grows
with the sweep (6% of the driver's busy time at 2,000 trials, benchmarks/driver_scale.py). Only live
trials (not TERMINATED) can be waiting, and the controller keeps them apart, so the scan goes over those.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


class LiveTrialsFirst:
    """choose_trial_to_run as Ray's FIFOScheduler has it (the first PENDING trial in the order trials were
    added, else the first PAUSED one), looking only at the live trials."""

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if len(waiting) > 1:   # rare (a restored experiment): Ray's order, the order of get_trials()
                order = {trial: index for index, trial in enumerate(tune_controller.get_trials())}
                waiting.sort(key=order.__getitem__)
            if waiting:
                return waiting[0]
        return None


class LiveFIFOScheduler(LiveTrialsFirst, FIFOScheduler):
    """FIFO (no early stopping)."""


class LiveASHAScheduler(LiveTrialsFirst, ASHAScheduler):
    """ASHA on one objective."""
