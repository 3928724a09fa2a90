"""TPE over a study's newest trials: the cost of a suggestion stays flat however long the sweep runs."""

from __future__ import annotations

import optuna

# TPE's cost per suggestion grows with the trials it models (0.04 s at 100, 0.07 s at 2,000 on the 2-core machine,
# the driver's largest growing cost in benchmarks/driver_scale.py). Past this many trials it models the
# newest ones only: a sweep of up to TPE_WINDOW trials is sampled exactly as by plain TPE.
TPE_WINDOW = 500


class RecentTPESampler(optuna.samplers.TPESampler):
    """TPE that models the newest `window` trials of the states it asks for.

    A long sweep's cost per suggestion stays flat instead of growing with every trial before it; the
    search-space groups still see every trial's parameters, since they accumulate as trials arrive.
    """

    def __init__(self, *args, window: int = TPE_WINDOW, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.window = window

    def infer_relative_search_space(self, study, trial):
        return super().infer_relative_search_space(RecentTrials(study, self.window), trial)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(RecentTrials(study, self.window), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(RecentTrials(study, self.window), trial, param_name, param_distribution)


class RecentTrials:
    """A study as the sampler reads it: its newest `window` trials (all the running ones are among them, since a
    sweep runs far fewer than `window` at once; an orphan of a crash, RUNNING for ever, drops out in time)."""

    def __init__(self, study: optuna.Study, window: int) -> None:
        self._study, self._window = study, window

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self._study.get_trials(deepcopy=deepcopy, states=states)[-self._window:]

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        # Slicing, not filtering: a pass over every trial per call would grow with the study again.
        return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)[-self._window:]
