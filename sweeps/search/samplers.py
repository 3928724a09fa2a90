"""Which Optuna sampler chooses a sweep's trials: `sampler: tpe | frontier | random | qmc | nsga2 | grid`.

- tpe (default): multivariate, grouped TPE with the constant liar, for conditional spaces run in parallel,
  over the newest TPE_WINDOW trials (see RecentTPESampler).
- frontier: TPE that learns how to train from every trial, stopped ones included, and draws the density
  where a well-trained network would add most to the front (sweeps.search.frontier). With MO-ASHA's
  `undominated` promotion, the best arm of the replays (docs/search.md); the wide spaces use it.
- random: the baseline a guided search has to beat.
- qmc: scrambled Sobol points: random search's even-handedness, with the space covered more evenly (the
  params of the first trial's branch; a `when` param outside it is drawn at random). With MO-ASHA, the best
  arm on the recorded benchmarks (docs/search.md).
- nsga2: NSGA-II, with a population sized to the budget so that it gets a few generations.
- grid: every combination of the categorical params once (sweeps.space.grid), enqueued in order, so
  the sampler itself never draws; `trials` defaults to the grid's size.
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from sweeps.search.frontier import DENSITY, EXPLORE, AccuracyView, frontier_density

SAMPLERS = ("tpe", "frontier", "random", "qmc", "nsga2", "grid")
# TPE's cost per suggestion grows with the trials it models (0.04 s at 100, 0.07 s at 2,000 on the 2-core machine,
# the driver's largest growing cost in benchmarks/driver_scale.py). Past this many trials it models the
# newest ones only: a sweep of up to TPE_WINDOW trials is sampled exactly as by plain TPE.
TPE_WINDOW = 500


def population_size(trials: int) -> int:
    """NSGA-II's generation size: about four generations in the budget, at least 4 individuals."""
    return max(4, trials // 4)


def make_sampler(name: str, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random" or name == "grid":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size(trials), seed=seed)
    with warnings.catch_warnings():  # QMC and TPE's `group` are "experimental" in Optuna 5 (stable since 3.0)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "qmc":
            import scipy.stats  # noqa: F401  (here, not in its first draw: Ray warns when one takes over a second)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)
        if name == "frontier":
            return FrontierSampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                   n_startup_trials=min(5, max(2, trials // 3)))
        return RecentTPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                n_startup_trials=min(10, max(2, trials // 3)))


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


class FrontierSampler(RecentTPESampler):
    """TPE on AccuracyView over every param but the density, which `frontier_density` draws (sweeps.search.frontier).

    A study with no `density` param has nothing to place: what sets its second objective is spread over many
    params (NAS-Bench-201's model size over the whole cell, benchmarks/proxy.py). There TPE reads the study as
    it is, both objectives, as `sampler: tpe` does; the sweeps' space check refuses such a space in one line.
    """

    def __init__(self, *args, explore: float = EXPLORE, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.explore = explore
        self._draw = np.random.default_rng(kwargs.get("seed"))
        self._places_density = False   # set once a trial has a density param: a study keeps its params

    def _view(self, study):
        """The study TPE reads. The window comes first, so AccuracyView copies only the trials TPE models."""
        if not self._places_density:
            self._places_density = any(DENSITY in t.params for t in study.get_trials(deepcopy=False))
        return AccuracyView(RecentTrials(study, self.window)) if self._places_density else study

    def infer_relative_search_space(self, study, trial):
        space = super().infer_relative_search_space(self._view(study), trial)
        space.pop(DENSITY, None)
        return space

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name != DENSITY or not isinstance(param_distribution, CategoricalDistribution):
            return super().sample_independent(self._view(study), trial, param_name, param_distribution)
        self._places_density = True
        trials = study.get_trials(deepcopy=False)
        done = [(t.values[0], t.params[DENSITY]) for t in trials
                if t.state == TrialState.COMPLETE and t.values is not None and DENSITY in t.params]
        choice = frontier_density(done, param_distribution.choices) if done else None
        if choice is None or self._draw.random() < self.explore:
            tried = [sum(t.params.get(DENSITY) == c for t in trials) for c in param_distribution.choices]
            least = np.flatnonzero(np.array(tried) == min(tried))
            choice = param_distribution.choices[self._draw.choice(least)]
        return choice
