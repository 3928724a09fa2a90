"""What each metric a run reports means to a search: the one table that every reader of objectives uses.

A sweep optimises, ranks, plots and filters on these names. Each entry says which way is better, the range
the metric lives in (the worst end of a bounded range is a hypervolume reference that does not move between
sweeps), whether a log axis reads it, when a run reports it, and the config value a run aims for: MO-ASHA
ranks a trial on its target density before its schedule gets there. Adding an objective is one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

EPOCH, END = "epoch", "end"   # when a run reports a metric: every epoch, or once when it ends


@dataclass(frozen=True)
class Metric:
    """One reported metric, as a search reads it."""

    name: str
    mode: str | None              # "max" or "min": which way is better; None: a setting, never an objective
    low: float = -math.inf        # the range the metric lives in
    high: float = math.inf
    log_scale: bool = False       # spans decades: plotted on a log axis
    cadence: str = EPOCH          # EPOCH or END
    target: str | None = None     # the TrainConfig attribute holding what a run aims for (its final value)
    split: str | None = None      # "val" or "test": reported only where the run has that split
    chance_floor: bool = False    # an accuracy: at or below chance (1 / classes) a result is no choice
    label: str = ""               # a short column header (progress tables)

    @property
    def worst(self) -> float:
        """The bounded end a hypervolume reference sits at (infinite: take the worst observed value)."""
        return self.low if self.mode == "max" else self.high

    @property
    def header(self) -> str:
        return self.label or self.name


def _table(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


# The order is the order runs report them in (and the columns a results table shows).
METRICS: dict[str, Metric] = _table(
    Metric("train_loss", "min", 0.0),
    Metric("val_accuracy", "max", 0.0, 1.0, split="val", chance_floor=True, label="val_acc"),
    Metric("val_loss", "min", 0.0, split="val"),
    Metric("test_accuracy", "max", 0.0, 1.0, split="test", chance_floor=True, label="test_acc"),
    Metric("test_loss", "min", 0.0, split="test"),
    Metric("density", "min", 0.0, 1.0, log_scale=True, target="target_density"),
    Metric("compression_ratio", "max", 1.0, log_scale=True),
    Metric("lr", None),
    # Of the network as it would be slimmed (whole channels removed): what it costs to run, per image.
    Metric("params", "min", 0.0, log_scale=True),
    Metric("macs", "min", 0.0, log_scale=True),
    Metric("channel_density", "min", 0.0, 1.0, log_scale=True),
)


def metric(name: str, table: dict[str, Metric] | None = None) -> Metric | None:
    """The entry for `name` (None: not a reported metric). `table` defaults to METRICS, read at call time."""
    return (METRICS if table is None else table).get(name)


def reported(val_fraction: float = 0.1) -> tuple[str, ...]:
    """What a run with this `val_fraction` reports: val_* only when it holds out a validation split."""
    return tuple(m.name for m in METRICS.values() if val_fraction > 0 or m.split != "val")


def each_epoch(names: Iterable[str]) -> list[str]:
    """Those of `names` that runs report every epoch (the rest only once, when they end)."""
    return [n for n in names if (m := metric(n)) is not None and m.cadence == EPOCH]


def test_twin(name: str) -> str | None:
    """The test-split metric beside a validation one (val_accuracy: test_accuracy): what choosing on `name`
    should be read against. None for a metric without one."""
    entry, twin = metric(name), f"test_{name.removeprefix('val_')}"
    return twin if entry is not None and entry.split == "val" and twin in METRICS else None
