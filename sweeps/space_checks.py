"""Semantic checks of a parsed search space against weightmom's own registries and configs.

Each check raises `Invalid("key.path: ...")` on the first problem: unknown names and knobs, values the
configs reject, bad bounds, `when` conditions that can never hold, schedules that overrun the budget,
start points outside the space, unknown objectives and early stopping that cannot work.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sweeps.space_schema import CategoricalParam, FixedParam, FloatParam, Invalid, NumericParam, Param, RawSpace
from weightmom.config import LR_SCHEDULES, OPTIMIZERS, TrainConfig, build
from weightmom.data import DATASETS
from weightmom.errors import UsageError
from weightmom.models import MODELS
from weightmom.pruning import METHODS, pruner_config

AUTO_EARLY_STOPPING_EPOCHS = 6   # below this, ASHA has too few rungs to be worth its noise
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "pruner")
REGISTRIES: dict[str, Any] = {"method": METHODS, "model": MODELS, "dataset": DATASETS,
                              "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES}


def flatten_fixed(fixed: dict) -> dict:
    flat = {k: v for k, v in fixed.items() if k != "pruner"}
    if "pruner" in fixed:
        if not isinstance(fixed["pruner"], dict):
            raise Invalid("fixed.pruner: expected a mapping of pruner knobs")
        flat.update({f"pruner.{k}": v for k, v in fixed["pruner"].items()})
    return flat


def possible_methods(raw: RawSpace, fixed: dict) -> list[str]:
    """The methods trials can run, checked first: every knob check depends on them."""
    spec = raw.params.get("method")
    if spec is None:
        named = [("fixed.method", fixed.get("method", TrainConfig().method))]
    elif isinstance(spec, (CategoricalParam, FixedParam)):
        named = [(f"params.method.{suffix}", value) for suffix, value in spec.samples()]
    else:
        raise Invalid("params.method: expected type categorical or fixed (method names)")
    for key, method in named:
        if method not in METHODS:
            raise Invalid(f"{key}: unknown method {method!r}; choose from: {', '.join(METHODS)}")
    return [method for _, method in named]


def _knobs(method: str) -> set[str]:
    """The pruner.* knobs `method` accepts: its config's fields, less density and what the method fixes."""
    return {f.name for f in dataclasses.fields(METHODS[method].config)} - {"density", *METHODS[method].fixed}


def _knob_takers(knob: str, methods: list[str]) -> list[str]:
    return [m for m in methods if knob in _knobs(m)]


def _check_name(key: str, name: str, methods: list[str]) -> None:
    """`name` is a TrainConfig field or a pruner knob that every method in `methods` accepts."""
    head, dotted, knob = name.partition(".")
    if name == "pruner" or (dotted and head != "pruner"):
        raise Invalid(f"{key}: expected a TrainConfig field or pruner.<knob>; nested keys exist only under pruner")
    if not dotted:
        if name not in TRAIN_FIELDS:
            raise Invalid(f"{key}: unknown key; expected a TrainConfig field ({', '.join(TRAIN_FIELDS)}) "
                          f"or pruner.<knob>")
        return
    if knob == "density":
        raise Invalid(f"{key}: the target density is the top-level key 'density', not pruner.density")
    takers = _knob_takers(knob, methods)
    if not takers:
        valid = sorted(set().union(*map(_knobs, methods)))
        raise Invalid(f"{key}: unknown pruner knob for method {', '.join(methods)}; "
                      f"valid knobs: {', '.join(valid) or 'none'}")
    if len(takers) < len(methods):
        others = [m for m in methods if m not in takers]
        when = f"when: {{method: [{', '.join(takers)}]}}"
        hint = f"add {when}" if key.startswith("params.") else f"move it to params: {{type: fixed, value: ..., {when}}}"
        raise Invalid(f"{key}: method {', '.join(others)} does not take this knob; {hint}")


def _reason(err: UsageError, name: str) -> str:
    """A weightmom error without the key it starts with, when the caller's key path already names it."""
    return str(err).removeprefix(f"{name}: ")


def _check_value(key: str, name: str, value: Any, methods: list[str]) -> None:
    """Registry names must exist; other values must pass TrainConfig's or each method config's checks.

    TrainConfig checks each field on its own, so one key at a time pins any error on the right key.
    """
    try:
        if name in REGISTRIES and value not in REGISTRIES[name]:
            raise UsageError(f"unknown {name} {value!r}; choose from: {', '.join(REGISTRIES[name])}")
        if name.startswith("pruner."):
            for method in _knob_takers(name.removeprefix("pruner."), methods):
                pruner_config(method, 0.1, {name.removeprefix("pruner."): value})
        else:
            build(TrainConfig, {name: value})
        if name == "density":  # e.g. dense keeps every weight: a searched density would fail its trials
            for method in methods:
                pruner_config(method, value)
    except UsageError as err:
        raise Invalid(f"{key}: {_reason(err, name)}") from None


def check_fixed(fixed: dict, methods: list[str]) -> None:
    for name, value in fixed.items():
        _check_name(f"fixed.{name}", name, methods)
        _check_value(f"fixed.{name}", name, value, methods)


def _check_bounds(key: str, spec: Param) -> None:
    if isinstance(spec, NumericParam):
        if spec.low >= spec.high:
            raise Invalid(f"{key}.low: expected a number below high ({spec.high}), got {spec.low}")
        if spec.log and spec.low <= 0:
            raise Invalid(f"{key}.low: log scale needs low > 0, got {spec.low}")
        if spec.step is not None and spec.step <= 0:
            raise Invalid(f"{key}.step: expected a step > 0, got {spec.step}")
        if spec.log and spec.step is not None and (isinstance(spec, FloatParam) or spec.step != 1):
            raise Invalid(f"{key}.step: Optuna cannot combine log with a step, got step {spec.step}")
    if isinstance(spec, CategoricalParam):
        if not spec.choices:
            raise Invalid(f"{key}.choices: expected a non-empty list")
        if len(set(map(repr, spec.choices))) < len(spec.choices):
            raise Invalid(f"{key}.choices: expected distinct choices, got {spec.choices}")


def _reachable(name: str, spec: Param, reach: dict[str, list[str]], methods: list[str]) -> list[str]:
    """The methods under which `name` can be sampled: its own condition and its conditions' conditions."""
    allowed = [m for m in methods if "method" not in spec.when or m in spec.when["method"]]
    for other in spec.when:
        allowed = [m for m in allowed if m in reach[other]]
    if not allowed:
        raise Invalid(f"params.{name}.when: can never hold for the space's methods ({', '.join(methods)})")
    return allowed


def check_params(raw: RawSpace, fixed: dict, methods: list[str]) -> None:
    reach: dict[str, list[str]] = {}
    for name, spec in raw.params.items():
        key = f"params.{name}"
        if name in fixed:
            raise Invalid(f"{key}: also set in fixed; a key is either searched or fixed")
        for other, values in spec.when.items():
            if other not in reach:
                raise Invalid(f"{key}.when.{other}: expected an earlier param (params are sampled in order); "
                              f"earlier: {', '.join(reach) or 'none'}")
            for value in values:
                if not raw.params[other].contains(value):
                    raise Invalid(f"{key}.when.{other}: {value!r} is not a value params.{other} can take")
        _check_bounds(key, spec)
        reach[name] = _reachable(name, spec, reach, methods)
        _check_name(key, name, reach[name])
        for suffix, value in spec.samples():
            _check_value(f"{key}.{suffix}", name, value, reach[name])


def _numbers(raw: RawSpace, fixed: dict, name: str) -> tuple[str, list[float]]:
    """Where `name` is set and the numeric values it can take there."""
    where, values = (f"params.{name}", [v for _, v in raw.params[name].samples()]) if name in raw.params \
        else (f"fixed.{name}", [fixed.get(name)])
    return where, [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def check_schedule(raw: RawSpace, fixed: dict) -> None:
    """Epoch-unit schedule knobs must fit the fixed budget and each other, or such trials fail at setup."""
    if "epochs" in raw.params or "pruner.unit" in raw.params or fixed.get("pruner.unit", "epoch") != "epoch":
        return
    epochs = fixed.get("epochs", TrainConfig().epochs)
    (_, starts), (end_key, ends) = _numbers(raw, fixed, "pruner.prune_start"), _numbers(raw, fixed, "pruner.prune_end")
    if ends and max(ends) > epochs:
        raise Invalid(f"{end_key}: expected at most the budget of {epochs} epochs, got {max(ends)}")
    if starts and ends and max(starts) > min(ends):
        raise Invalid(f"{end_key}: expected at least pruner.prune_start's largest value ({max(starts)}), "
                      f"got {min(ends)}")


def check_start_point(index: int, point: dict, raw: RawSpace, fixed: dict) -> None:
    for name, value in point.items():
        key = f"start_points.{index}.{name}"
        if name not in raw.params:
            what = "a fixed key" if name in fixed else "unknown"
            raise Invalid(f"{key}: {what}; start points set searched params only ({', '.join(raw.params)})")
        spec = raw.params[name]
        if not spec.contains(value):
            domain = ", ".join(f"{k} {v!r}" for k, v in spec.samples())
            raise Invalid(f"{key}: expected a value in params.{name} ({domain}), got {value!r}")
        for other, values in spec.when.items():
            if other in point and point[other] not in values:
                raise Invalid(f"{key}: never sampled when {other} is {point[other]!r} "
                              f"(when: {other} in {list(values)})")


def check_objectives(raw: RawSpace, fixed: dict, reported: tuple[str, ...]) -> None:
    """1 to 3 distinct objectives, each a metric in `reported` (what every trial reports); never a test metric.

    Choosing on the test set makes every number the sweep reports optimistic, so selection runs on the
    validation split (`val_fraction` of the training data) and the test set is only measured.
    """
    if not 1 <= len(raw.objectives) <= 3:
        raise Invalid(f"objectives: expected 1 to 3 objectives, got {len(raw.objectives)}")
    seen: set[str] = set()
    for i, o in enumerate(raw.objectives):
        if o.metric.startswith("test_"):
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} would choose on the test set, which makes the "
                          f"results optimistic; use {o.metric.replace('test_', 'val_', 1)!r} (the validation "
                          "split) and read test_* in the results")
        if o.metric.startswith("val_") and fixed.get("val_fraction", 1) == 0:
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} needs a validation split, but fixed.val_fraction "
                          "is 0")
        if o.metric not in reported:
            raise Invalid(f"objectives.{i}.metric: no trial reports {o.metric!r}; "
                          f"reported: {', '.join(reported)}")
        if o.metric in seen:
            raise Invalid(f"objectives.{i}.metric: duplicate objective {o.metric!r}")
        seen.add(o.metric)


def resolve_early_stopping(raw: RawSpace, fixed: dict) -> tuple[bool, int]:
    """(enabled, grace period), auto resolved: ASHA compares trials at shared epochs, so it needs a fixed
    budget of some length."""
    es, epochs = raw.early_stopping, fixed.get("epochs", TrainConfig().epochs)
    if es.enabled is True and "epochs" in raw.params:
        raise Invalid("early_stopping.enabled: ASHA needs a fixed budget, but params.epochs is searched")
    enabled = es.enabled if es.enabled != "auto" else (
        "epochs" not in raw.params and epochs >= AUTO_EARLY_STOPPING_EPOCHS)
    # Before pruning ends, a denser trial is ahead just for being dense: compare only after the last prune_end.
    _, ends = _numbers(raw, fixed, "pruner.prune_end")
    pruning_done = math.ceil(max(ends)) if ends else round(0.75 * epochs)
    grace = es.grace_period if es.grace_period is not None else pruning_done
    if enabled and grace >= epochs:
        raise Invalid(f"early_stopping.grace_period: expected fewer than the {epochs} epochs, got {grace}")
    if enabled and grace < pruning_done and fixed.get("pruner.unit", "epoch") == "epoch":
        raise Invalid(f"early_stopping.grace_period: expected at least {pruning_done} (the latest prune_end), "
                      f"so trials are compared at their final density; got {grace}")
    return enabled, grace
