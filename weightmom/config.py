"""Training configuration: one frozen dataclass, presets, and strict loading.

Layering, last wins: defaults < preset < YAML file < command-line flags <
`--set key=value`. Unknown keys are an error everywhere, because a typo that
silently falls back to a default wastes a GPU-night.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from weightmom.errors import UsageError, require

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; `asdict` is what gets logged and swept."""

    dataset: str = "digits"
    data_dir: str | None = None       # CIFAR "python version" folder; None downloads to the cache
    model: str = "lenet300"
    width: float = 1.0                # channel multiplier (small models for CPU benchmarks)
    method: str = "dense"             # dense | weightmom | gmp | snip | gsm | random | n2nskip
    density: float | None = None      # target fraction of prunable weights kept; None: 1 for dense, else 0.1
    pruner: dict = field(default_factory=dict)  # method knobs, e.g. {"window": 5, "threshold": 1.0}
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"            # sgd (Nesterov momentum) | adam
    lr: float = 0.05                  # peak learning rate
    momentum: float = 0.9             # SGD momentum (Adam's beta1 stays 0.9)
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"       # cosine | step | constant
    lr_step_epochs: int = 30          # step schedule: multiply by lr_step_gamma every this many epochs
    lr_step_gamma: float = 0.5
    label_smoothing: float = 0.0
    seed: int = 0
    val_fraction: float = 0.1         # of the training data, held out to choose on; 0: train on all of it
    split_seed: int = 0               # fixes the validation split apart from `seed`, so trials share it
    device: str = "auto"              # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        require(self.epochs > 0, f"epochs must be a positive integer (got {self.epochs})")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive (got {self.lr})")
        require(self.batch_size > 0, f"batch_size must be positive (got {self.batch_size})")
        require(self.width > 0, f"width must be positive (got {self.width})")
        require(self.density is None or 0 < self.density <= 1,
                f"density must be in (0, 1] (got {self.density})")
        require(self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
        require(self.lr_schedule in LR_SCHEDULES,
                f"unknown lr_schedule {self.lr_schedule!r}; choose from: {', '.join(LR_SCHEDULES)}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        require(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1) (got {self.label_smoothing})")
        require(0 <= self.val_fraction < 0.5, f"val_fraction must be in [0, 0.5) (got {self.val_fraction})")
        require(self.lr_step_epochs > 0, f"lr_step_epochs must be positive (got {self.lr_step_epochs})")

    @property
    def target_density(self) -> float:
        if self.density is not None:
            return self.density
        return 1.0 if self.method == "dense" else 0.1


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The paper's schedule: Adam, lr 0.05 halved every 30 epochs, batch 128.
    "paper": {"optimizer": "adam", "lr": 0.05, "lr_schedule": "step", "lr_step_epochs": 30,
              "lr_step_gamma": 0.5, "batch_size": 128, "weight_decay": 0.0},
}


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a dataclass field's type, converting only where lossless."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0]
    if typing.get_origin(hint) is tuple:
        return _coerce_sequence(value, typing.get_args(hint)[0], key)
    expected = getattr(hint, "__name__", str(hint))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if hint is str and isinstance(value, str):
        return value
    if hint is dict and isinstance(value, dict):
        return value
    raise UsageError(f"{key}: expected {expected}, got {value!r}")


def _coerce_sequence(value: Any, item: Any, key: str) -> tuple:
    """A `tuple[X, ...]` field takes a list, one X, or (as search spaces hold only scalars) a string "x1,x2"."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if item is int:
            value = [int(part) if part.lstrip("+-").isdigit() else part for part in value]
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(coerce(v, item, key) for v in items)
    except UsageError:
        raise UsageError(f"{key}: expected a list of {item.__name__}, got {value!r}") from None


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Construct dataclass `cls` from a mapping, naming any unknown or mistyped key."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in known:
            raise UsageError(f"unknown config key '{prefix}{key}'; known keys: {', '.join(sorted(known))}")
    return cls(**{k: coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()})


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML-typed value (`lr=0.1`, `pruner.threshold=inf`)."""
    key, sep, raw = text.partition("=")
    require(bool(sep) and bool(key.strip()), f"--set expects key=value (got {text!r})")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf", "nan"):
        value = float(value)
    return key.strip(), value


def merge(values: dict[str, Any], key: str, value: Any) -> None:
    """Set a possibly dotted key (`pruner.window`) in a nested dict, in place."""
    head, _, rest = key.partition(".")
    if rest:
        require(head == "pruner", f"unknown config key {key!r}: only pruner.* keys are nested")
        values.setdefault(head, {})
        require(isinstance(values[head], dict), f"{head} must be a mapping")
        values[head] = {**values[head], rest: value}
    else:
        values[key] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file; a missing or malformed file is a UsageError, not a traceback."""
    path = Path(path)
    require(path.is_file(), f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = {} if data is None else data
    require(isinstance(data, dict), f"{path}: expected a mapping of config keys")
    return data


def resolve_config(preset: str = "default", file: str | Path | None = None,
                   flags: dict[str, Any] | None = None, assignments: list[str] = ()) -> TrainConfig:
    """Apply the layers in order and build a validated TrainConfig."""
    require(preset in PRESETS, f"unknown preset {preset!r}; choose from: {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if file is not None:
        for key, value in load_yaml(file).items():
            if key == "pruner" and isinstance(value, dict):
                values["pruner"] = {**values.get("pruner", {}), **value}
            else:
                values[key] = value
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
    for text in assignments:
        merge(values, *parse_assignment(text))
    return build(TrainConfig, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
