"""The front as people read it: which columns `weightmom pareto` prints and plots/front.txt holds.

Apart from bookkeeping/front.py, which writes those files on the driver and imports Optuna, MLflow and
matplotlib to do so: `pareto` shows the same table without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from sweeps.analysis.pareto import shown_metrics
from sweeps.records.results import recorded_name


class Objectives(Protocol):
    """A SearchSpace, or the SpaceOutline a finished sweep's folder gives without the full load."""

    @property
    def metrics(self) -> Sequence[str]: ...

    @property
    def params(self) -> Iterable[str]: ...


def front_columns(space: Objectives) -> list[str]:
    """What a reader of the front wants: the objectives (each val_* with its test_* twin), then the searched
    parameters."""
    return ["trial_id", *shown_metrics(space.metrics), *[f"config.{recorded_name(name)}" for name in space.params]]
