"""The sweep folder's state: sweep.json, what a resumed driver re-attaches to (the folder's file names: folder.py).

It lives apart from the run loop so that the records, the analysis and recovery can read a sweep
folder without importing Ray Tune.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.records.folder import SPACE_COPY, SWEEP_STATE_FILE
from weightmom.errors import UsageError
from weightmom.files import atomic_write

if TYPE_CHECKING:
    from sweeps.space.outline import SpaceOutline
    from sweeps.space.search_space import SearchSpace

__all__ = ["SPACE_COPY", "SWEEP_STATE_FILE", "SweepState", "load_state", "load_sweep_outline", "load_sweep_space",
           "write_state"]


@dataclass(frozen=True)
class SweepState:
    """What a resumed driver needs to re-attach: written once, before the first trial."""

    space: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    optuna_storage: str
    storage: str
    ray_experiment: str   # folder under `storage`: unique per sweep, so sweeps can share a bucket
    trials: int
    concurrency: int
    smoke_test: bool
    sampler: str = "tpe"   # a resumed sweep keeps the sampler it started with


def write_state(out: Path, state: SweepState) -> None:
    atomic_write(out / SWEEP_STATE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(asdict(state), indent=2)))


def load_state(out: Path) -> SweepState:
    path = out / SWEEP_STATE_FILE
    if not path.is_file():
        raise UsageError(f"{out} holds no sweep ({SWEEP_STATE_FILE} missing)")
    return SweepState(**json.loads(path.read_text()))


def load_sweep_space(out: Path) -> SearchSpace:
    """The space a finished sweep ran with, from the copy in its folder."""
    from sweeps.space.search_space import load_space

    load_state(out)
    return load_space(out / SPACE_COPY, import_code=False)


def load_sweep_outline(out: Path) -> SpaceOutline:
    """A sweep's objectives and searched params, from its folder's space copy without the full load: what
    `pareto` and `best` need, without the model and dataset registries (torch) that checking a space loads."""
    from sweeps.space.outline import read_outline

    load_state(out)
    return read_outline(out / SPACE_COPY)
