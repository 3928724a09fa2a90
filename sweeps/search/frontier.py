"""The parts of the frontier sampler (`sampler: frontier`, sweeps.search.samplers.FrontierSampler): TPE that
learns how to train from every trial, and puts the density where it pays.

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
from optuna.study import StudyDirection
from optuna.trial import TrialState

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

    analysis.pareto.accuracy_density_hypervolume, unscaled: analysis/ sits above search/ (test_layers), and
    the density choice only compares gains, which the floor, chance and normalisation scale alike."""
    area, height, xs = 0.0, 0.0, sorted(((-math.log10(d), a) for a, d in points), reverse=True)
    for (x, a), (x_next, _) in zip(xs, [*xs[1:], (0.0, 0.0)]):
        height = max(height, a)
        area += (x - x_next) * height
    return area


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
