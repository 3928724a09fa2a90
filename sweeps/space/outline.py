"""A sweep's space in outline: what it optimised and what it searched, read with the file schema alone.

`pareto` and `best` read a finished (or killed) sweep's folder; they need its objectives and the names of
its searched params, not a space that could run again. The full load (search_space.load_space) checks
every value against the model and dataset registries, which import torch: 4 of `pareto`'s 4.5 s and
most of its 1 GB (benchmarks/command_cost.py). The folder's copy was checked in full when its sweep started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydantic

from sweeps.space.schema import RawSpace, pydantic_message, read_space_file
from weightmom.errors import UsageError, require


@dataclass(frozen=True)
class SpaceOutline:
    """The objectives (metric names and "max"/"min" modes, in order) and the searched params' names.

    `metrics`, `modes` and `params` read as SearchSpace's do, so code that shows a front takes either.
    """

    name: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    params: tuple[str, ...]


def read_outline(path: Path) -> SpaceOutline:
    """The outline of the space file at `path`; a file the schema refuses is one UsageError line naming it."""
    label = _label(path)
    require(path.is_file(), f"search space not found: {label} (no such file)")
    try:
        raw = RawSpace.model_validate(read_space_file(path, label))
    except pydantic.ValidationError as err:
        raise UsageError(f"{label}: {pydantic_message(err)}".replace("\n", " ")) from None
    return SpaceOutline(name=raw.name or path.stem, metrics=tuple(o.metric for o in raw.objectives),
                        modes=tuple(o.mode for o in raw.objectives), params=tuple(raw.params))


def _label(path: Path) -> str:
    """The file as load_space's errors name it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
