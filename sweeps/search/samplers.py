"""The Optuna sampler behind each name of sweeps.basis.registry.SAMPLERS (a space's `sampler:`).

- tpe (default): multivariate, grouped TPE with the constant liar, for conditional spaces run in parallel,
  over the newest TPE_WINDOW trials (see RecentTPESampler).
- frontier: TPE that learns how to train from every trial, stopped ones included, and draws the density
  where a well-trained network would add most to the front (sweeps.search.frontier). With MO-ASHA's
  `undominated` promotion, the best arm of the replays (docs/search.md); the wide spaces use it.
- random: the baseline a guided search has to beat.
- qmc: scrambled Sobol points: random search's even-handedness, with the space covered more evenly (the
  params of the first trial's branch; a `when` param outside it is drawn at random).
- nsga2: NSGA-II, with a population sized to the budget so that it gets a few generations.
- grid: every combination of the categorical params once (sweeps.space.grid), enqueued in order, so
  the sampler itself never draws; `trials` defaults to the grid's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna

from sweeps.search.frontier import FrontierSampler
from sweeps.search.recent_tpe import RecentTPESampler

__all__ = ["BUILDERS", "FrontierSampler", "RecentTPESampler", "make_sampler", "population_size"]


def population_size(trials: int) -> int:
    """NSGA-II's generation size: about four generations in the budget, at least 4 individuals."""
    return max(4, trials // 4)


def _qmc(trials: int, seed: int) -> optuna.samplers.BaseSampler:
    import scipy.stats  # noqa: F401  (here, not in its first draw: Ray warns when one takes over a second)
    return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)


def _frontier(trials: int, seed: int) -> optuna.samplers.BaseSampler:
    return FrontierSampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                           n_startup_trials=min(5, max(2, trials // 3)))


def _tpe(trials: int, seed: int) -> optuna.samplers.BaseSampler:
    return RecentTPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                            n_startup_trials=min(10, max(2, trials // 3)))


# One builder per name of sweeps.basis.registry.SAMPLERS (tests/test_space.py checks the two match).
BUILDERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "frontier": _frontier,
    "random": lambda trials, seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": _qmc,
    "nsga2": lambda trials, seed: optuna.samplers.NSGAIISampler(population_size=population_size(trials), seed=seed),
    "grid": lambda trials, seed: optuna.samplers.RandomSampler(seed=seed),   # enqueued: it never draws
}


def make_sampler(name: str, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler a space names, seeded; `trials` sizes its start-up phase (and NSGA-II's population)."""
    with warnings.catch_warnings():  # QMC and TPE's `group` are "experimental" in Optuna 5 (stable since 3.0)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return BUILDERS[name](trials, seed)
