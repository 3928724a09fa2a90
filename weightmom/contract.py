"""The library's contract with whatever drives it: a sweep, a script, a results table.

A driver speaks about runs through this module only, never through weightmom's dataclasses: a
TrainConfig from flat `a.b` keys and back, each method's knobs, one key and value checked for a set of
methods, when a method's schedule reaches its final density within an epoch budget, and the one
table of metrics every run reports (weightmom.objectives). The rules stay where they are enforced (the
configs); this module asks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightmom.config import TrainConfig, check_field, flatten, from_flat, mapping_fields
from weightmom.errors import UsageError, require
from weightmom.methods import METHODS, default_density, method_knob_types, pruner_config
from weightmom.objectives import END, EPOCH, Metric, each_epoch, metric, test_twin
from weightmom.strict import coerce, field_types

__all__ = ["END", "EPOCH", "METHOD_NAMES", "NESTED", "SCHEDULE_KNOBS", "SCHEDULE_SETTINGS", "TOP_LEVEL_KEYS",
           "Knob", "Metric", "TrainConfig", "check_data_source", "check_model_source", "check_name", "check_value",
           "config_from_flat", "default_value", "each_epoch", "final_density_epoch", "flat_config", "flatten",
           "method_knobs", "methods_taking", "metric", "metric_target", "reported_metrics", "test_twin"]

NESTED = mapping_fields()   # pruner, model_args: the keys set as pruner.<knob>, model_args.<argument>
TOP_LEVEL_KEYS = tuple(name for name in field_types(TrainConfig) if name not in NESTED)
CHAIN_KEYS = ("chain", "chain_epochs", "chain_lr")   # set by a space's `chain` section, never by hand
METHOD_NAMES = tuple(METHODS)
# Knobs counted in the schedule's unit (epochs unless pruner.unit is step): they fit only the budget they
# were chosen for, so a shortened run (a smoke test) drops them.
SCHEDULE_KNOBS = ("pruner.prune_start", "pruner.prune_end", "pruner.prune_every")
# What decides when a schedule ends: those knobs and the unit they count in.
SCHEDULE_SETTINGS = (*SCHEDULE_KNOBS, "pruner.unit")


@dataclass(frozen=True)
class Knob:
    """One pruner.* setting of a method: its type, its default, and its range (in words) or its choices."""

    name: str
    type: str
    default: Any
    range: str | None = None                 # e.g. "must be >= 1"
    choices: tuple[str, ...] | None = None


def reported_metrics(val_fraction: float = 0.1) -> tuple[str, ...]:
    """What a run with this `val_fraction` reports besides `epoch` (val_* only when it holds out a validation
    split): the metrics a sweep logs and may optimise, from the one table (weightmom.objectives)."""
    from weightmom import objectives

    return objectives.reported(val_fraction)


def metric_target(name: str, config: TrainConfig) -> float | None:
    """The final value of metric `name` that a run of `config` aims for (its target density), or None when
    the config does not tell."""
    entry = metric(name)
    return None if entry is None or entry.target is None else float(getattr(config, entry.target))


def config_from_flat(flat: Mapping[str, Any]) -> TrainConfig:
    """A validated TrainConfig from flat keys (`lr`, `pruner.window`, `model_args.depth`)."""
    return from_flat(dict(flat))


def flat_config(config: TrainConfig) -> dict[str, Any]:
    """The config as flat keys, with the density the run aims for (never None), sequences as lists (as YAML and
    JSON give them back): what a run records."""
    flat = flatten(dataclasses.asdict(dataclasses.replace(config, density=config.target_density)))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


def default_value(key: str) -> Any:
    """The default of a top-level key (`epochs`, `method`)."""
    require(key in TOP_LEVEL_KEYS, f"unknown config key {key!r}")
    return getattr(TrainConfig(), key)


def method_knobs(method: str) -> dict[str, Knob]:
    """The pruner.* knobs `method` takes, by name."""
    defaults = pruner_config(method, default_density(method))
    rules, choices = getattr(defaults, "RULES", {}), getattr(defaults, "CHOICES", {})
    return {name: Knob(name, _type_name(hint), getattr(defaults, name), rules.get(name, (None, None))[1],
                       choices.get(name)) for name, hint in method_knob_types(method).items()}


def _type_name(hint: Any) -> str:
    """`float`, `int | None`, `tuple[int, ...]`: the type as a reader writes it."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def methods_taking(knob: str, methods: Iterable[str]) -> list[str]:
    """Those of `methods` that take pruner.`knob`."""
    return [m for m in methods if knob in method_knob_types(m)]


def check_name(name: str, methods: Sequence[str]) -> None:
    """`name` is a top-level key, a model_args.<argument>, or a pruner knob some method in `methods` takes."""
    head, dotted, rest = name.partition(".")
    if name in NESTED or (dotted and head not in NESTED) or (dotted and not rest):
        raise UsageError(f"expected a TrainConfig field, pruner.<knob> or model_args.<argument>; nested keys "
                         f"exist only under {', '.join(NESTED)}")
    if not dotted:
        require(name in TOP_LEVEL_KEYS, f"unknown key; expected a TrainConfig field ({', '.join(TOP_LEVEL_KEYS)}), "
                                        "pruner.<knob> or model_args.<argument>")
        return
    if head == "pruner":
        require(rest != "density", "the target density is the top-level key 'density', not pruner.density")
        valid = sorted({k for m in methods for k in method_knob_types(m)})
        require(bool(methods_taking(rest, methods)), f"unknown pruner knob for method {', '.join(methods)}; "
                                                     f"valid knobs: {', '.join(valid) or 'none'}")


def check_value(name: str, value: Any, methods: Sequence[str]) -> None:
    """`value` passes the rules of key `name` (already checked by `check_name`) under every one of `methods`.

    One key at a time, so the error lands on the right key; a type error leaves out the `name: ` its
    message would start with (the caller names the key). model_args.* are checked against the model's
    factory by `check_model_source`.
    """
    from weightmom.data.sources import check_dataset_name
    from weightmom.models import check_model_name

    head, _, knob = name.partition(".")
    if head == "model_args":
        return
    if head == "pruner":
        for method in methods_taking(knob, methods):
            _without_key(lambda m=method: pruner_config(m, 0.1, {knob: value}), name)
        return
    if name == "method":
        require(isinstance(value, str) and value in METHODS,
                f"unknown method {value!r}; choose from: {', '.join(METHODS)}")
        return
    value = _without_key(lambda: coerce(value, field_types(TrainConfig)[name], name), name)
    if name == "model":
        check_model_name(value)
    elif name == "dataset":
        check_dataset_name(value)
    else:
        check_field(name, value)
    if name == "density":   # e.g. dense keeps every weight: a density it cannot take would fail its trials
        for method in methods:
            pruner_config(method, value)


def _without_key(check, name: str) -> Any:
    """Run `check`; a UsageError loses the `name: ` its message starts with (the caller names the key)."""
    try:
        return check()
    except UsageError as err:
        raise UsageError(str(err).removeprefix(f"{name}: ")) from None


def final_density_epoch(method: str, settings: Mapping[str, Any], epochs: int) -> float | None:
    """The epoch from which a run of `method` has its final density (0: from the start), given flat keys
    `settings` (the `pruner.*` ones that `method` takes count; the rest are ignored).

    None when the schedule counts optimizer steps, whose number depends on the data. Raises UsageError
    when the schedule does not fit `epochs`.
    """
    knobs = method_knob_types(method)
    pruner = {k.removeprefix("pruner."): v for k, v in settings.items()
              if k.startswith("pruner.") and k.removeprefix("pruner.") in knobs}
    spec = METHODS[method]
    config = pruner_config(method, default_density(method), pruner)
    if spec.final_density == "init":
        return 0.0
    if spec.final_density == "end":
        return float(epochs)
    if config.unit != "epoch":
        return None
    return float(config.resolve(epochs, steps_per_epoch=1).prune_end)


def check_model_source(model: str, width: float, model_args: Iterable[str]) -> None:
    """The model can be built with arguments named `model_args` (values unknown yet) and `width`, which
    applies to import-path models only. Imports a user's module."""
    from weightmom.imports import is_import_path
    from weightmom.models import model_factory

    model_factory(model, width if is_import_path(model) else 1.0, dict.fromkeys(model_args), partial=True)


def check_data_source(dataset: str, data_dir: str | None) -> None:
    """The dataset can be loaded from `data_dir`: names and folders are checked, no data is read."""
    from weightmom.data.sources import data_loader

    data_loader(dataset, data_dir)
