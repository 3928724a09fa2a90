"""The pruning methods as configuration: each method's knobs, what it fixes, and when it is fully pruned.

Plain dataclasses with no torch import, so a config is checked in milliseconds: `weightmom train`
refuses a `pruner.*` typo before torch (let alone the data) loads. How each method prunes lives in
weightmom/pruning/, one module per method, keyed by the same names.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

from weightmom.errors import UsageError, require
from weightmom.strict import Rule, build, check_rule, field_types

ALLOCATIONS = ("importance", "uniform", "global", "erk")
UNITS = ("epoch", "step")
BASES = ("snip", "random")
GRANULARITIES = ("weight", "channel")   # what a mask removes: single weights, or whole coupled channel groups


def check_density(density: float) -> None:
    """The one density rule: a fraction of prunable weights kept, in (0, 1]."""
    require(0 < density <= 1, f"density must be in (0, 1] (got {density})")


def default_density(method: str) -> float:
    """The density a run of `method` aims for when none is given: dense keeps everything."""
    return 1.0 if method == "dense" else 0.1


class Knobs:
    """A method config's own rules as data, so they can be listed (weightmom.contract.method_knobs) as well
    as enforced: RULES per field (a range, in words), CHOICES per field naming one of a few options."""

    RULES: ClassVar[dict[str, Rule]] = {}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        check_density(self.density)
        for name in (f.name for f in fields(self)):
            check_rule(f"pruner.{name}", name, getattr(self, name), self.RULES, self.CHOICES)


@dataclass(frozen=True)
class DenseConfig:
    density: float = 1.0

    def __post_init__(self) -> None:
        require(self.density == 1.0, f"method 'dense' keeps every weight; density must be 1 (got {self.density})")


@dataclass(frozen=True)
class WeightMomConfig(Knobs):
    density: float = 0.1               # target fraction of prunable weights kept at prune_end
    window: float = 5.0                # EMA span in observations: beta = 1 - 2 / (window + 1)
    beta: float | None = None          # set directly instead of window
    observe_every: int | None = None   # optimizer steps between observations; None: once per epoch
    threshold: float = 1.0             # eligible if m < threshold * mean(m); inf: all eligible
    allocation: str = "importance"     # importance | uniform | global | erk
    importance_scaling: float = 1.0    # alpha in d_l ~ I_l ** -alpha (0 = uniform)
    prune_start: float = 0.0           # in `unit`s; density is 1.0 until then
    prune_end: float | None = None     # in `unit`s; None: 75% of training
    prune_every: float = 1.0           # in `unit`s
    unit: str = "epoch"                # epoch | step
    prune_first: bool = True           # prune the first prunable layer
    prune_last: bool = True            # prune the last prunable layer
    granularity: str = "weight"        # weight | channel (whole coupled channel groups; method.md)

    RULES: ClassVar[dict[str, Rule]] = {
        "window": (lambda v: v >= 1, "must be >= 1"),
        "beta": (lambda v: v is None or 0 <= v < 1, "must be in [0, 1)"),
        "observe_every": (lambda v: v is None or v >= 1, "must be >= 1"),
        "threshold": (lambda v: v > 0, "must be > 0"),
        "importance_scaling": (math.isfinite, "must be finite"),
        "prune_start": (lambda v: v >= 0, "must be >= 0"),
        "prune_every": (lambda v: v > 0, "must be > 0"),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"allocation": ALLOCATIONS, "unit": UNITS,
                                                     "granularity": GRANULARITIES}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.prune_end is None or self.prune_end >= self.prune_start,
                f"pruner.prune_end ({self.prune_end}) is before pruner.prune_start ({self.prune_start})")

    def resolve(self, epochs: int, steps_per_epoch: int) -> WeightMomConfig:
        """Fill the defaults that depend on the run's length, and check the schedule fits it."""
        horizon = epochs if self.unit == "epoch" else epochs * steps_per_epoch
        end = self.prune_end if self.prune_end is not None else max(self.prune_start, round(0.75 * horizon))
        require(end <= horizon, f"pruner.prune_end ({end}) is after the end of training ({horizon} {self.unit}s)")
        beta = self.beta if self.beta is not None else 1.0 - 2.0 / (self.window + 1.0)
        return replace(self, prune_end=float(end), beta=beta,
                       observe_every=self.observe_every or steps_per_epoch)


@dataclass(frozen=True)
class SnipConfig(Knobs):
    density: float = 0.1
    batches: int = 1          # mini-batches whose saliencies are summed
    granularity: str = "weight"

    RULES: ClassVar[dict[str, Rule]] = {"batches": (lambda v: v >= 1, "must be >= 1")}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"granularity": GRANULARITIES}


@dataclass(frozen=True)
class GsmConfig(Knobs):
    density: float = 0.1
    momentum: float = 0.98      # the paper uses 0.98 to 0.99
    lr: float | None = None     # None: the run's learning rate

    RULES: ClassVar[dict[str, Rule]] = {"momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
                                        "lr": (lambda v: v is None or v > 0, "must be positive")}


@dataclass(frozen=True)
class RandomConfig(Knobs):
    density: float = 0.1
    granularity: str = "weight"

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"granularity": GRANULARITIES}


@dataclass(frozen=True)
class N2NSkipConfig(Knobs):
    density: float = 0.1
    base: str = "snip"                 # how the network's own weights are masked at initialisation
    hops: tuple[int, ...] = (2,)       # join layers i and j when j - i is one of these
    skip_fraction: float = 0.5         # share of the non-zero budget that goes to the skips

    RULES: ClassVar[dict[str, Rule]] = {
        "hops": (lambda v: len(v) > 0 and all(h >= 2 for h in v), "must be a non-empty list of integers >= 2"),
        "skip_fraction": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"base": BASES}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hops", tuple(sorted(set(self.hops))))


@dataclass(frozen=True)
class Method:
    config: type
    fixed: dict[str, Any]   # settings that define the method and may not be overridden
    # When the network has its final density: from the start (masks at initialisation), on the config's
    # schedule, or only after the last epoch (GSM masks at the end).
    final_density: Literal["init", "schedule", "end"] = "init"


METHODS: dict[str, Method] = {
    "dense": Method(DenseConfig, {}),
    "weightmom": Method(WeightMomConfig, {}, "schedule"),
    "gmp": Method(WeightMomConfig, {"window": 1.0, "beta": None, "threshold": float("inf")}, "schedule"),
    "snip": Method(SnipConfig, {}),
    "gsm": Method(GsmConfig, {}, "end"),
    "random": Method(RandomConfig, {}),
    "n2nskip": Method(N2NSkipConfig, {}),
}


def method_knob_types(method: str) -> dict[str, Any]:
    """The pruner.* knobs `method` accepts, with their types: its config's fields less density and what it fixes."""
    require(method in METHODS, f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    spec = METHODS[method]
    return {k: t for k, t in field_types(spec.config).items() if k != "density" and k not in spec.fixed}


def pruner_config(method: str, density: float, options: dict[str, Any] | None = None) -> Any:
    """The validated config of `method` at target `density`, with `options` (pruner.* keys) applied."""
    knobs = method_knob_types(method)
    spec, options = METHODS[method], dict(options or {})
    require("density" not in options, "set the target density with --density, not pruner.density")
    for key in options:
        if key in spec.fixed:
            raise UsageError(f"pruner.{key} is fixed for method {method!r}; use --method weightmom to change it")
        if key not in knobs:
            raise UsageError(_unknown_knob(key, method, knobs))
    return build(spec.config, {"density": density, **options, **spec.fixed}, prefix="pruner.")


def _unknown_knob(key: str, method: str, knobs: dict[str, Any]) -> str:
    if key == "granularity":
        takes = [m for m, spec in METHODS.items() if "granularity" in field_types(spec.config)]
        return f"pruner.granularity: method {method!r} has no granularity knob; channel granularity is for " \
               f"{', '.join(takes)}"
    if not knobs:
        return f"unknown config key 'pruner.{key}': method {method!r} takes no pruner knobs"
    close = difflib.get_close_matches(key, knobs, n=1)
    hint = f" (did you mean pruner.{close[0]}?)" if close else ""
    return f"unknown config key 'pruner.{key}' for method {method!r}{hint}; its knobs: {', '.join(sorted(knobs))}"
