"""Semantic checks of a parsed search space against weightmom's own registries and configs.

Each check raises `Invalid("key.path: ...")` on the first problem: unknown names and knobs, values the
configs reject, bad bounds, `when` conditions that can never hold, schedules that overrun the budget,
start points outside the space, unknown objectives and early stopping that cannot work.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from sweeps.space.schema import CategoricalParam, FixedParam, FloatParam, Invalid, NumericParam, Param, RawSpace
from weightmom import contract
from weightmom.chain import CHAIN_METHODS
from weightmom.errors import UsageError

AUTO_EARLY_STOPPING_EPOCHS = 6   # below this, ASHA has too few rungs to be worth its noise


def flatten_fixed(fixed: dict) -> dict:
    """`fixed` as flat keys: `pruner: {window: 5}` and `pruner.window: 5` mean the same."""
    for head in contract.NESTED:
        if head in fixed and not isinstance(fixed[head], dict):
            raise Invalid(f"fixed.{head}: expected a mapping of {head}.<name> keys")
    return contract.flatten(fixed)


def possible_methods(raw: RawSpace, fixed: dict) -> list[str]:
    """The methods trials can run, checked first: every knob check depends on them."""
    spec = raw.params.get("method")
    if spec is None:
        named = [("fixed.method", _fixed(fixed, "method"))]
    elif isinstance(spec, (CategoricalParam, FixedParam)):
        named = [(f"params.method.{suffix}", value) for suffix, value in spec.samples()]
        if not named:   # before any check that asks which methods can run: with none, every one fails
            raise Invalid("params.method.choices: expected a non-empty list of method names")
    else:
        raise Invalid("params.method: expected type categorical or fixed (method names)")
    for key, method in named:
        if method not in contract.METHOD_NAMES:
            raise Invalid(f"{key}: unknown method {method!r}; choose from: {', '.join(contract.METHOD_NAMES)}")
    return [method for _, method in named]


def _check_name(key: str, name: str, methods: list[str]) -> None:
    """`name` is a config key that every method in `methods` accepts; else how to make it so."""
    try:
        contract.check_name(name, methods)
    except UsageError as err:
        raise Invalid(f"{key}: {err}") from None
    head, _, knob = name.partition(".")
    takers = contract.methods_taking(knob, methods) if head == "pruner" else methods
    if len(takers) < len(methods):
        others = [m for m in methods if m not in takers]
        when = f"when: {{method: [{', '.join(takers)}]}}"
        hint = f"add {when}" if key.startswith("params.") else f"move it to params: {{type: fixed, value: ..., {when}}}"
        raise Invalid(f"{key}: method {', '.join(others)} does not take this knob; {hint}")


def _fixed(fixed: dict, name: str) -> Any:
    """A top-level key's value for every trial: as the space fixes it, else the library's default."""
    return fixed.get(name, contract.default_value(name))


def _check_value(key: str, name: str, value: Any, methods: list[str]) -> None:
    try:
        contract.check_value(name, value, methods)
    except UsageError as err:
        raise Invalid(f"{key}: {err}") from None


def _possible(raw: RawSpace, fixed: dict, name: str) -> list[tuple[str, Any]]:
    """(key path, value) for every value `name` can take: its param's samples, else fixed, else the default."""
    if name in raw.params:
        return [(f"params.{name}.{suffix}", value) for suffix, value in raw.params[name].samples()]
    return [(f"fixed.{name}", _fixed(fixed, name))]


def check_sources(raw: RawSpace, fixed: dict) -> None:
    """Every model the space can pick must take every model_args.<argument> it sets (a conditional one
    may be missing from some trials), and width only where it is built in; every dataset must be
    loadable with the data_dir it gets. Imports the user's modules (so the driver must find them too),
    reads no data."""
    # model_args.block.depth sets the factory's argument `block` (a mapping): the first name is the argument.
    names = {k.split(".")[1] for k in (*fixed, *raw.params) if k.startswith("model_args.")}
    try:
        for key, model in _possible(raw, fixed, "model"):
            for _, width in _possible(raw, fixed, "width"):
                where = key
                contract.check_model_source(model, width, names)
        for key, dataset in _possible(raw, fixed, "dataset"):
            for _, data_dir in _possible(raw, fixed, "data_dir"):
                where = key
                contract.check_data_source(dataset, data_dir)
    except UsageError as err:
        raise Invalid(f"{where}: {err}") from None


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


def schedules(raw: RawSpace, fixed: dict, methods: list[str]) -> list[tuple[str, dict]]:
    """(method, flat settings) for every schedule a trial can run: each method with the fixed keys and each
    combination of the searched schedule settings' extreme values."""
    searched = [k for k in contract.SCHEDULE_SETTINGS if k in raw.params]
    combos = itertools.product(*[[v for _, v in raw.params[k].samples()] for k in searched])
    settings = [{**fixed, **dict(zip(searched, combo))} for combo in combos]
    return [(method, setting) for method in methods for setting in settings]


def _blame(raw: RawSpace, fixed: dict, err: UsageError) -> str:
    """The key path of the schedule setting a library error names first (`pruner.prune_end (14) is after ...`)."""
    named = sorted((str(err).find(k), k) for k in contract.SCHEDULE_SETTINGS if k in str(err))
    for _, key in named:
        if key in raw.params or key in fixed:
            return f"{'params' if key in raw.params else 'fixed'}.{key}"
    return "fixed.epochs"


def final_density_epochs(raw: RawSpace, fixed: dict, methods: list[str]) -> list[float | None]:
    """For every schedule a trial can run, the epoch from which it has its final density (None: counted in
    steps, or the budget is searched). Raises Invalid when a schedule cannot fit the fixed budget, or such
    trials would fail at setup."""
    if "epochs" in raw.params:
        return [None]
    ends = []
    for method, settings in schedules(raw, fixed, methods):
        try:
            ends.append(contract.final_density_epoch(method, settings, _fixed(fixed, "epochs")))
        except UsageError as err:
            raise Invalid(f"{_blame(raw, fixed, err)}: {err}") from None
    return ends


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


def check_frontier(raw: RawSpace) -> None:
    """`sampler: frontier` draws the density itself from a grid: it needs one, and density as the 2nd objective."""
    if raw.sampler != "frontier":
        return
    if not isinstance(raw.params.get("density"), CategoricalParam):
        raise Invalid("sampler: frontier draws the density from its choices; make params.density categorical "
                      "(a log grid, e.g. [0.01, 0.03, 0.1, 0.3])")
    metrics = [(o.metric, o.mode) for o in raw.objectives]
    if len(metrics) != 2 or metrics[1] != ("density", "min") or metrics[0][1] != "max":
        raise Invalid("sampler: frontier needs two objectives: an accuracy (mode max), then density (mode min)")


def check_objectives(raw: RawSpace, fixed: dict) -> None:
    """1 to 3 distinct objectives, each a metric every trial reports; never a test metric.

    Choosing on the test set makes every number the sweep reports optimistic, so selection runs on the
    validation split (`val_fraction` of the training data) and the test set is only measured.
    """
    if not 1 <= len(raw.objectives) <= 3:
        raise Invalid(f"objectives: expected 1 to 3 objectives, got {len(raw.objectives)}")
    val_fraction = _fixed(fixed, "val_fraction")
    reported = contract.reported_metrics(val_fraction)
    seen: set[str] = set()
    for i, o in enumerate(raw.objectives):
        entry = contract.metric(o.metric)
        if o.metric.startswith("test_") or (entry is not None and entry.split == "test"):
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} would choose on the test set, which makes the "
                          f"results optimistic; use {o.metric.replace('test_', 'val_', 1)!r} (the validation "
                          "split) and read test_* in the results")
        if entry is not None and entry.split == "val" and o.metric not in reported:
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} needs a validation split, but fixed.val_fraction "
                          f"is {val_fraction}")
        if entry is None or o.metric not in reported:
            raise Invalid(f"objectives.{i}.metric: no trial reports {o.metric!r}; "
                          f"reported: {', '.join(reported)}")
        if entry.mode is None:
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} is a setting a trial reports, not an objective")
        if o.mode != entry.mode:
            better = "larger" if entry.mode == "max" else "smaller"
            raise Invalid(f"objectives.{i}.mode: {o.metric!r} is better {better}; expected mode {entry.mode}, "
                          f"got {o.mode}")
        if o.metric in seen:
            raise Invalid(f"objectives.{i}.metric: duplicate objective {o.metric!r}")
        seen.add(o.metric)


def check_rung_objectives(raw: RawSpace) -> None:
    """Early stopping compares trials at shared epochs: every objective must be known there, reported each
    epoch or read from the trial's config (its target). Nothing may switch early stopping off silently."""
    for i, o in enumerate(raw.objectives):
        entry = contract.metric(o.metric)
        if entry is not None and entry.cadence != contract.EPOCH and entry.target is None:
            raise Invalid(f"objectives.{i}.metric: {o.metric!r} is reported only when a trial ends, so early "
                          "stopping cannot rank trials on it at its rungs; set early_stopping.enabled: false")


def resolve_early_stopping(raw: RawSpace, fixed: dict, final_epochs: list[float | None]) -> tuple[bool, int]:
    """(enabled, grace period), auto resolved. ASHA compares trials at shared epochs, so it needs a fixed
    budget of some length; and before a trial has its final density it is ahead just for being denser, so
    the default grace period is the latest epoch `final_epochs` (from final_density_epochs) names."""
    es, epochs = raw.early_stopping, _fixed(fixed, "epochs")
    if es.enabled is True and "epochs" in raw.params:
        raise Invalid("early_stopping.enabled: ASHA needs a fixed budget, but params.epochs is searched")
    unknown = None in final_epochs
    pruning_done = max(1, math.ceil(max((e for e in final_epochs if e is not None), default=0)))
    grace = es.grace_period if es.grace_period is not None else pruning_done
    enabled = es.enabled
    if enabled == "auto":   # only where it can work: a fixed budget of some length, compared after pruning
        known_in_time = es.grace_period is not None or (not unknown and pruning_done < epochs)
        enabled = "epochs" not in raw.params and epochs >= AUTO_EARLY_STOPPING_EPOCHS and known_in_time
    if enabled and unknown and es.grace_period is None:
        raise Invalid("early_stopping.grace_period: the pruning schedule counts optimizer steps, so the epoch at "
                      "which trials reach their final density is not known here; set grace_period")
    if enabled and grace >= epochs:
        raise Invalid(f"early_stopping.grace_period: expected fewer than the {epochs} epochs, got {grace}"
                      + ("" if es.grace_period is not None else " (the epoch from which every trial has its final "
                                                                "density)"))
    if enabled:
        check_rung_objectives(raw)
    # MO-ASHA ranks density on each trial's target (sweeps/search/moasha.py), so it may compare trials sooner;
    # ASHA, on accuracy alone, would favour a network only because its pruning has not caught up yet.
    ranks_target_density = len(raw.objectives) >= 2 and any(
        (entry := contract.metric(o.metric)) is not None and entry.target == "target_density" for o in raw.objectives)
    if enabled and grace < pruning_done and not unknown and not ranks_target_density:
        raise Invalid(f"early_stopping.grace_period: expected at least {pruning_done} (the epoch from which every "
                      f"trial has its final density), so trials are compared at their final density; got {grace}")
    return bool(enabled), grace


def chain_fixed(raw: RawSpace, fixed: dict, methods: list[str]) -> dict:
    """The keys a space's `chain` section gives every trial (weightmom.chain); {} without one. The chain walks its
    own densities, so neither `density` nor the chain's own keys may be set elsewhere."""
    keys = contract.CHAIN_KEYS if raw.chain is None else ("density", *contract.CHAIN_KEYS)
    for key in keys:
        where = f"fixed.{key}" if key in fixed else f"params.{key}" if key in raw.params else None
        if where is not None:
            hint = "a chain walks its own densities (chain.densities)" if raw.chain else "set a chain in `chain:`"
            raise Invalid(f"{where}: {hint}; remove {key}")
    if raw.chain is None:
        return {}
    densities = raw.chain.densities
    cannot = [m for m in methods if m not in CHAIN_METHODS]
    if cannot:
        raise Invalid(f"chain: method {', '.join(cannot)} cannot chain; a chain needs {' or '.join(CHAIN_METHODS)} "
                      "(they prune further from where they are)")
    if any(not 0 < d <= 1 for d in densities) or any(a <= b for a, b in zip(densities, densities[1:])):
        raise Invalid(f"chain.densities: expected densities in (0, 1] going down, densest first, got {densities}")
    return {"density": densities[0], "chain": list(densities[1:]), "chain_epochs": raw.chain.epochs_per_step,
            "chain_lr": raw.chain.lr_scale}
