"""A grid space's points: every combination of the categorical params once, honouring `when`.

A param that does not apply to a combination does not multiply it. `sampler: grid` enqueues these
points in order (sweeps.search.samplers), and `trials` defaults to their number.
"""

from __future__ import annotations

from typing import Any

from sweeps.space.schema import CategoricalParam, FixedParam, Invalid, ParamSpec


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
