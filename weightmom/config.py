"""Training configuration: one frozen dataclass, presets, and strict loading.

Layering, last wins: defaults < preset < YAML file < command-line flags <
`--set key=value`. Unknown keys are an error everywhere, because a typo that
silently falls back to a default wastes a GPU-night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from weightmom.chain import CHAIN_METHODS, ChainPlan, plan_of
from weightmom.errors import UsageError, require
from weightmom.methods import check_density, default_density, pruner_config
from weightmom.strict import Rule, build, check_rule, field_types

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "step", "constant")
DATA_LOADINGS = ("auto", "memory", "stream")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; `asdict` is what gets logged and swept."""

    dataset: str = "digits"           # digits | cifar10 | cifar100 | imagefolder | package.module:loader
    data_dir: str | None = None       # CIFAR "python version" folder or ImageFolder root; None: download
    image_size: int = 32              # imagefolder (and PIL datasets): images are resized to this square
    data_loading: str = "auto"        # imagefolder: memory | stream | auto (stream when it would not fit)
    data_workers: int | None = None   # stream: decoding processes; None: this process's CPUs, at most 8
    model: str = "lenet300"           # a built-in name or package.module:factory
    model_args: dict = field(default_factory=dict)  # keyword arguments of an import-path model's factory
    width: float = 1.0                # channel multiplier of built-in models (small ones for CPU benchmarks)
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
    chain: tuple[float, ...] = ()     # densities below `density` to walk down after `epochs` (weightmom.chain)
    chain_epochs: int = 3             # epochs per further chain step; it prunes in the first of them
    chain_lr: float = 0.3             # each further step's peak lr, as a fraction of `lr`

    def __post_init__(self) -> None:
        for name in ("density", *FIELD_CHOICES, *FIELD_RULES):
            check_field(name, getattr(self, name))
        require(self.data_loading != "stream" or self.dataset == "imagefolder",
                f"data_loading stream needs dataset imagefolder (got {self.dataset!r}, which is held in memory)")
        # The method's knobs too: a typo in pruner.* fails here, before any data is read.
        pruner_config(self.method, self.target_density, self.pruner)
        if self.chain:
            check_chain(self.method, self.target_density, self.chain)

    @property
    def chain_plan(self) -> ChainPlan | None:
        """When each chain step starts and ends; None for a run that is not a chain."""
        return plan_of((self.target_density, *self.chain), self.epochs, self.chain_epochs)

    @property
    def total_epochs(self) -> int:
        """Every epoch the run trains: `epochs`, plus `chain_epochs` per further chain density."""
        return self.epochs + self.chain_epochs * len(self.chain)

    @property
    def target_density(self) -> float:
        if self.density is not None:
            return self.density
        return default_density(self.method)


FIELD_CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES,
                                             "data_loading": DATA_LOADINGS}
# Each field's own rule, as (holds, what it must be); types are checked by `build`.
FIELD_RULES: dict[str, Rule] = {
    "epochs": (lambda v: v > 0, "must be a positive integer"),
    "lr": (lambda v: v > 0 and math.isfinite(v), "must be positive"),
    "batch_size": (lambda v: v > 0, "must be positive"),
    "width": (lambda v: v > 0, "must be positive"),
    "image_size": (lambda v: v > 0, "must be a positive integer"),
    "weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "val_fraction": (lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
    "lr_step_epochs": (lambda v: v > 0, "must be positive"),
    "data_workers": (lambda v: v is None or v >= 0, "must be >= 0 (0: decode in the training process)"),
    "chain_epochs": (lambda v: v > 0, "must be a positive integer"),
    "chain_lr": (lambda v: 0 < v <= 1 and math.isfinite(v), "must be in (0, 1]"),
}


def check_chain(method: str, density: float, chain: tuple[float, ...]) -> None:
    """A chain needs an iterative method and densities that go down from the run's own."""
    require(method in CHAIN_METHODS, f"chain needs an iterative method ({' or '.join(CHAIN_METHODS)}), "
                                     f"not {method!r}")
    steps = (density, *chain)
    for d in chain:
        check_density(d)
    require(all(a > b for a, b in zip(steps, steps[1:])),
            f"chain densities must go down from density {density}: got {list(chain)}")


def check_field(name: str, value: Any) -> None:
    """One TrainConfig field's own rule, without building a config (a search space checks key by key)."""
    if name == "density":
        if value is not None:
            check_density(value)
    else:
        check_rule(name, name, value, FIELD_RULES, FIELD_CHOICES)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The paper's schedule: Adam, lr 0.05 halved every 30 epochs, batch 128.
    "paper": {"optimizer": "adam", "lr": 0.05, "lr_schedule": "step", "lr_step_epochs": 30,
              "lr_step_gamma": 0.5, "batch_size": 128, "weight_decay": 0.0},
}


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML-typed value (`lr=0.1`, `pruner.threshold=inf`)."""
    key, sep, raw = text.partition("=")
    require(bool(sep) and bool(key.strip()), f"--set expects key=value (got {text!r})")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf", "nan"):
        value = float(value)
    return key.strip(), value


def mapping_fields(cls: type = TrainConfig) -> tuple[str, ...]:
    """The dict-valued fields (`pruner`, `model_args`): the only keys that take dotted sub-keys."""
    return tuple(name for name, hint in field_types(cls).items() if hint is dict)


def merge(values: dict[str, Any], key: str, value: Any) -> None:
    """Set a possibly dotted key (`pruner.window`, `model_args.depth`) in a nested dict, in place.

    A dict value for a mapping field is merged key by key into what is already there.
    """
    head, _, rest = key.partition(".")
    nested = mapping_fields()
    if rest:
        require(head in nested, f"unknown config key {key!r}: only {', '.join(f'{n}.*' for n in nested)} "
                                "keys are nested")
    if not rest and not (head in nested and isinstance(value, dict)):
        values[key] = value
        return
    values.setdefault(head, {})
    require(isinstance(values[head], dict), f"{head} must be a mapping")
    inner = dict(values[head])
    if rest:
        merge_into(inner, rest, value)
    else:
        inner.update(value)
    values[head] = inner


def merge_into(mapping: dict[str, Any], key: str, value: Any) -> None:
    """`a.b` sets mapping["a"]["b"], creating or copying the levels on the way."""
    head, _, rest = key.partition(".")
    if not rest:
        mapping[head] = value
        return
    inner = mapping.get(head)
    require(inner is None or isinstance(inner, dict), f"{head} must be a mapping to set {key!r}")
    mapping[head] = dict(inner or {})
    merge_into(mapping[head], rest, value)


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
            merge(values, key, value)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
    for text in assignments:
        merge(values, *parse_assignment(text))
    return build(TrainConfig, values)


def from_flat(flat: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from flat keys (`lr`, `pruner.window`, `model_args.depth`): how sweeps and tables hold one."""
    values: dict[str, Any] = {}
    for key, value in flat.items():
        merge(values, key, value)
    return build(TrainConfig, values)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as flat dotted keys: the inverse of `from_flat`'s merging."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
