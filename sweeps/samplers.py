"""Which Optuna sampler chooses a sweep's trials: `sampler: tpe | random | nsga2 | grid` in a space.

- tpe (default): multivariate, grouped TPE with the constant liar, for conditional spaces run in parallel.
- random: the baseline a guided search has to beat.
- nsga2: NSGA-II, with a population sized to the budget so that it gets a few generations.
- grid: every combination of the categorical params once, honouring `when` (a param that does not apply
  to a combination does not multiply it). The combinations are enqueued in order, so the sampler itself
  never draws; `trials` defaults to the grid's size.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from sweeps.space_schema import CategoricalParam, FixedParam, Invalid, ParamSpec

SAMPLERS = ("tpe", "random", "nsga2", "grid")


def grid_points(params: dict[str, ParamSpec]) -> list[dict[str, Any]]:
    """The grid's combinations, each as {param: value} for the params that apply to it."""
    for name, spec in params.items():
        if not isinstance(spec, (CategoricalParam, FixedParam)):
            raise Invalid(f"params.{name}: sampler grid takes only categorical (or fixed) params, got "
                          f"{spec.type}; list the values to try as {{type: categorical, choices: [...]}}")
    combos: list[dict[str, Any]] = [{}]   # every value taken so far, fixed ones included (for `when`)
    for name, spec in params.items():
        values = [spec.value] if isinstance(spec, FixedParam) else list(spec.choices)
        grown = []
        for combo in combos:
            grown += [{**combo, name: value} for value in values] if spec.applies(combo) else [combo]
        combos = grown
    fixed = {name for name, spec in params.items() if isinstance(spec, FixedParam)}
    return [{k: v for k, v in combo.items() if k not in fixed} for combo in combos]


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
