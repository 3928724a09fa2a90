"""The frontier sampler (`sampler: frontier`): TPE that learns how to train from every trial, and puts the
density where it pays.

Two things the stock samplers miss on a wide sparsity space with early stopping (docs/search.md):
- With early stopping most trials end PRUNED, and a multi-objective Optuna study gives a PRUNED trial no
  values, so multi-objective TPE learns little from them. Here TPE reads the study as a single-objective one,
  accuracy up, each trial where it got to: a COMPLETE trial with its final accuracy, a stopped one with its
  last result (LAST_RESULT, kept by the searcher), ranked below any trial that went further, as Optuna's
  single-objective TPE ranks pruned trials. It learns every param but the density.
- The density is not learned: what trains well at 30% mostly trains well at 1%. A density is drawn where a
  well-trained network would add the most to the front's hypervolume (accuracy against log density, as the
  sweeps score fronts): the accuracy a density can reach is bounded, optimistically, by the best COMPLETE
  accuracy at it or at the next denser choice. With probability `explore`, and until a trial completes,
  the least-tried density is drawn instead, so that every density keeps being tried.

It needs a categorical `density` param and objectives (accuracy-like, max) then (density, min): the space
check says so in one line otherwise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sweeps.basis.dominance import dominated_volume
from sweeps.search.recent_tpe import RecentTPESampler, RecentTrials

LAST_RESULT = "last_result"   # a PRUNED trial's user attr: [epoch, accuracy] of its last result
DENSITY = "density"           # the param drawn by the frontier rule
EXPLORE = 0.75                # the replay's best on the digits table (0.5: 0.36, 0.75: 0.34, 1.0: 0.44)


class AccuracyView:
    """A (accuracy, density) study as TPE reads a single-objective one: accuracy up, where each trial got to."""

    directions = [StudyDirection.MAXIMIZE]
    direction = StudyDirection.MAXIMIZE

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _is_multi_objective(self) -> bool:
        return False

    @staticmethod
    def _convert(trials: list) -> list:
        out = []
        for trial in trials:
            if trial.state == TrialState.COMPLETE and trial.values is not None:
                trial = copy.copy(trial)
                trial._values = trial._values[:1]
            elif trial.state == TrialState.PRUNED and LAST_RESULT in trial.user_attrs:
                epoch, accuracy = trial.user_attrs[LAST_RESULT]
                trial = copy.copy(trial)
                trial.intermediate_values = {int(epoch): float(accuracy)}
            out.append(trial)
        return out

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self._convert(self._study.get_trials(deepcopy=False, states=states))

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        return self._convert(self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache))


def dominated_area(points: Sequence[tuple[float, float]]) -> float:
    """The area (accuracy, density) points dominate in (-log10 density, accuracy) space, from (0, 0).

    basis.dominance.accuracy_density_hypervolume, unscaled: the density choice only compares gains, which its
    floor, chance and normalisation scale alike."""
    if not points:
        return 0.0
    return dominated_volume(-np.array([(-math.log10(d), a) for a, d in points], dtype=float), np.zeros(2))


def frontier_density(done: Sequence[tuple[float, float]], choices: Sequence[float]) -> float | None:
    """The choice whose optimistic accuracy adds the most area to the front of `done` (accuracy, density
    points), or None when no choice adds any. A choice's bound: the best accuracy at it or the next denser."""
    best = {c: max((a for a, d in done if d == c), default=None) for c in choices}
    ordered, now, gains = sorted(choices), dominated_area(done), []
    for i, choice in enumerate(ordered):
        denser = next((best[c] for c in ordered[i + 1:] if best[c] is not None), None)
        bound = max((a for a in (best[choice], denser) if a is not None), default=None)
        gains.append(0.0 if bound is None else dominated_area([*done, (bound, choice)]) - now)
    return ordered[int(np.argmax(gains))] if max(gains) > 1e-12 else None


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
