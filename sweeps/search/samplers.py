"""Which Optuna sampler chooses a sweep's trials: `sampler: tpe | random | nsga2 | grid` in a space.

- tpe (default): multivariate, grouped TPE with the constant liar, for conditional spaces run in parallel.
- random: the baseline a guided search has to beat.
- nsga2: NSGA-II, with a population sized to the budget so that it gets a few generations.
- grid: every combination of the categorical params once (sweeps.space.grid), enqueued in order, so
  the sampler itself never draws; `trials` defaults to the grid's size.
"""

from __future__ import annotations

import warnings

import optuna

SAMPLERS = ("tpe", "random", "nsga2", "grid")


def population_size(trials: int) -> int:
    """NSGA-II's generation size: about four generations in the budget, at least 4 individuals."""
    return max(4, trials // 4)


def make_sampler(name: str, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random" or name == "grid":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size(trials), seed=seed)
    with warnings.catch_warnings():  # `group` is "experimental" in Optuna 5; it is what conditional spaces need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                          n_startup_trials=min(10, max(2, trials // 3)))
