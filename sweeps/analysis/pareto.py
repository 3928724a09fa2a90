"""A sweep's Pareto front and its hypervolume, over plain rows (dicts): what the driver, `weightmom pareto`
and the plots show. The math is sweeps.basis.dominance's; what each metric's range is, the objective table's.
Objectives are given as parallel sequences: metric names and modes ("max"/"min").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from sweeps.basis.dominance import (
    DENSITY_FLOOR,
    MODES,
    accuracy_density_hypervolume,
    as_matrix,
    finite_number,
    hypervolume,
    pareto_mask,
    signs,
)
from weightmom.contract import metric, test_twin
from weightmom.errors import require

__all__ = ["DENSITY_FLOOR", "MODES", "accuracy_density_hypervolume", "above_chance", "default_reference",
           "format_table", "front_determines_hypervolume", "front_rows", "hypervolume", "objective_matrix",
           "pareto_mask", "shown_metrics", "sweep_hypervolume"]

def sweep_hypervolume(rows: Sequence[dict], metrics: Sequence[str], modes: Sequence[str]) -> tuple[float, str]:
    """The hypervolume a sweep reports (parent run, plot titles, `pareto`), with a few words on its definition.

    For an accuracy to maximise against a size read on a log axis (density, MACs, params: the objective table
    says which), it is the area above chance against log size, from the size's bound (density 1) or the
    largest size seen, down to 100x smaller: comparable across sweeps and, for density, with
    benchmarks/search_quality.py. For any other objectives, the plain hypervolume against default_reference.
    """
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    accuracy, size = _accuracy_and_size(metrics, modes)
    if accuracy and size:
        classes = [r["num_classes"] for r in complete if finite_number(r.get("num_classes"))]
        chance = 1.0 / min(classes) if classes else 0.0
        full = _full_size(size, rows)
        volume = accuracy_density_hypervolume(
            [(r.get(accuracy), r[size] / full if finite_number(r.get(size)) else None) for r in complete], chance)
        return volume, f"log-{size} hypervolume {volume:.4f} ({accuracy} above chance {chance:.2g})"
    values = objective_matrix(complete, metrics)
    finite = values[np.isfinite(values).all(axis=1)]
    if not len(finite):
        return 0.0, "hypervolume 0 (no complete trial)"
    reference = default_reference(metrics, modes, finite)
    volume = hypervolume(finite, modes, reference)
    return volume, f"hypervolume {volume:.4g} (reference {', '.join(f'{r:.4g}' for r in reference)})"


def _accuracy_and_size(metrics: Sequence[str], modes: Sequence[str]) -> tuple[str | None, str | None]:
    """(an accuracy to maximise, a log-scale size to minimise) when those are the two objectives."""
    entries = [(metric(m), mode) for m, mode in zip(metrics, modes)]
    if len(entries) != 2 or any(e is None for e, _ in entries):
        return None, None
    accuracy = next((e.name for e, mode in entries if e.chance_floor and mode == "max"), None)
    size = next((e.name for e, mode in entries if e.log_scale and mode == "min"), None)
    return accuracy, size


def _full_size(size: str, rows: Sequence[dict]) -> float:
    """The size a log axis starts from: the metric's bound (density 1), else the largest value seen."""
    high = metric(size).high
    if math.isfinite(high):
        return high
    return max((float(r[size]) for r in rows if finite_number(r.get(size)) and r[size] > 0), default=1.0)


def front_determines_hypervolume(metrics: Sequence[str], modes: Sequence[str]) -> bool:
    """Whether sweep_hypervolume of the front alone equals that of all rows: yes unless a reference point
    comes from the worst observed value (an unbounded metric), which dominated rows can move."""
    worst = [_worst(m, mode) for m, mode in zip(metrics, modes)]
    return not any(math.isinf(w) for w in worst)


def default_reference(metrics: Sequence[str], modes: Sequence[str], values: np.ndarray | None = None) -> list[float]:
    """The worst point: the worst bound of a bounded metric, else the worst observed value.

    Accuracies and density live in [0, 1] and compression ratios in [1, inf); other
    metrics (losses, seconds) need `values` (an (n, k) array of the observed points).
    """
    sign = signs(modes, len(metrics))
    observed = None if values is None else as_matrix(values)
    reference = []
    for j, (name, mode) in enumerate(zip(metrics, modes)):
        worst = _worst(name, mode)
        if math.isinf(worst):
            require(observed is not None and observed.size > 0, f"no observed values of {name} for a reference")
            column = observed[:, j] * sign[j]
            column = column[~np.isnan(column)]
            require(column.size > 0, f"no observed values of {name} for a reference")
            worst = float(column.max() * sign[j])
        reference.append(worst)
    return reference


def _worst(name: str, mode: str) -> float:
    """The worst end of the metric's range in the objective table (infinite when unbounded or unknown)."""
    entry = metric(name)
    if entry is None:
        return -math.inf if mode == "max" else math.inf
    return entry.low if mode == "max" else entry.high


def objective_matrix(rows: Sequence[dict], metrics: Sequence[str]) -> np.ndarray:
    """An (n, k) float array of the rows' metrics; missing or non-numeric values become NaN."""
    return np.array(
        [[float(row[m]) if finite_number(row.get(m)) else math.nan for m in metrics] for row in rows],
        dtype=float,
    ).reshape(len(rows), len(metrics))


def front_rows(rows: Sequence[dict], metrics: Sequence[str], modes: Sequence[str]) -> list[dict]:
    """The non-dominated COMPLETE rows, best first by the first metric (then the next ones).

    Only COMPLETE trials with finite values for every metric compete: a PRUNED trial's
    metrics are from a shortened run and must not push real results off the front. A row at or below
    chance on an accuracy it maximises is no choice (it adds no hypervolume): it stays in the rows only.
    """
    sign = signs(modes, len(metrics))
    eligible = [row for row in rows if row.get("state") == "COMPLETE"
                and all(finite_number(row.get(m)) for m in metrics) and above_chance(row, metrics, modes)]
    if not eligible:
        return []
    mask = pareto_mask(objective_matrix(eligible, metrics), modes)
    front = [row for row, keep in zip(eligible, mask) if keep]
    return sorted(front, key=lambda row: tuple(float(row[m]) * s for m, s in zip(metrics, sign)))


# A result within this share of the way from chance to perfect is no better than a guess on a split of a few
# hundred images (a constant predictor scores 1/classes give or take the split's class balance: 0.103 on digits).
CHANCE_MARGIN = 0.05


def above_chance(row: dict, metrics: Sequence[str], modes: Sequence[str]) -> bool:
    """False when the row's value of a maximised accuracy (the table's chance_floor) is at chance: within
    CHANCE_MARGIN of the way from 1 / num_classes to 1. True when the row does not say its number of classes."""
    classes = row.get("num_classes")
    if not finite_number(classes) or classes < 2:
        return True
    floors = [m for m, mode in zip(metrics, modes) if mode == "max" and (e := metric(m)) is not None and e.chance_floor]
    chance = 1.0 / classes
    return all(float(row[m]) > chance + CHANCE_MARGIN * (1.0 - chance) for m in floors)


def shown_metrics(metrics: Sequence[str]) -> list[str]:
    """The objectives as a reader of the front sees them: each val_* with its test_* twin beside it, so the
    optimism of choosing is visible."""
    return [shown for name in metrics for shown in (name, test_twin(name)) if shown is not None]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{float(value):.4g}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain aligned text table: numbers right-aligned, floats to 4 significant digits, None as "-"."""
    header = list(columns)
    body = [[_cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(_is_number(row.get(c)) for row in rows if row.get(c) is not None) for c in columns]
    widths = [max([len(h)] + [len(line[j]) for line in body]) for j, h in enumerate(header)]

    def render(cells: list[str]) -> str:
        parts = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [render(header), render(["-" * w for w in widths])]
    lines.extend(render(line) for line in body)
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return isinstance(value, (Real, np.number)) and not isinstance(value, bool)
