"""Pareto fronts and hypervolumes over finished sweep trials.

Pure functions over plain rows (dicts) and arrays, so the sweep driver, the
`weightmom pareto` command and the tests share one definition of "best".
Objectives are given as parallel sequences: metric names and modes ("max"/"min").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from weightmom.errors import require

MODES = ("max", "min")
# Metrics with a known range: the worst end of it is a reference point that does not
# move between sweeps, so hypervolumes of different sweeps stay comparable.
_BOUNDS: dict[str, tuple[float, float]] = {
    "density": (0.0, 1.0),
    "compression_ratio": (1.0, math.inf),
}


def _signs(modes: Sequence[str], k: int) -> np.ndarray:
    """+1 for "min", -1 for "max": multiplying turns every objective into a minimisation."""
    require(len(modes) == k, f"{len(modes)} modes for {k} objectives")
    for mode in modes:
        require(mode in MODES, f"objective mode {mode!r}: expected one of {', '.join(MODES)}")
    return np.array([1.0 if mode == "min" else -1.0 for mode in modes])


def _as_matrix(values: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 0)
    require(array.ndim == 2, f"objective values must be an (n, k) array, got shape {array.shape}")
    return array


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """True for the non-dominated rows of an (n, k) array.

    Equal points do not dominate each other, so every copy of a front point is kept;
    a row with any NaN is never on the front (and dominates nothing).
    """
    array = _as_matrix(values)
    n, k = array.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    loss = array * _signs(modes, k)
    valid = ~np.isnan(loss).any(axis=1)
    mask = valid.copy()
    candidates = loss[valid]
    for i in np.flatnonzero(valid):
        no_worse = (candidates <= loss[i]).all(axis=1)
        better = (candidates < loss[i]).any(axis=1)
        if (no_worse & better).any():
            mask[i] = False
    return mask


def hypervolume(values: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by the points and bounded by `reference` (a worst point).

    Points worse than the reference in any objective add nothing and NaN rows are
    ignored, so partial results never raise.
    """
    array = _as_matrix(values)
    k = len(reference)
    signs = _signs(modes, k)
    ref = np.asarray(reference, dtype=float) * signs
    require(bool(np.isfinite(ref).all()), f"hypervolume reference {list(reference)} must be finite")
    if array.size == 0:
        return 0.0
    require(array.shape[1] == k, f"{array.shape[1]} objectives but a {k}-dimensional reference")
    loss = array * signs
    inside = ~np.isnan(loss).any(axis=1) & (loss <= ref).all(axis=1)
    if not inside.any():
        return 0.0
    return _dominated_volume(loss[inside], ref)


def _dominated_volume(loss: np.ndarray, ref: np.ndarray) -> float:
    """The exact volume between minimisation points (each <= ref) and ref.

    Two objectives: a staircase sweep. More: slabs along the last objective, each as thick as the gap to the
    next point and as wide as the volume the points below it dominate in the other objectives. Fine for the
    1 to 3 objectives and the few hundred trials of a sweep (optuna's own is private API).
    """
    if loss.shape[1] == 1:
        return float(ref[0] - loss[:, 0].min())
    if loss.shape[1] == 2:
        order = np.lexsort((loss[:, 1], loss[:, 0]))   # by the first objective, then the second
        widths = np.diff(np.append(loss[order, 0], ref[0]))
        return float(widths @ (ref[1] - np.minimum.accumulate(loss[order, 1])))
    loss = loss[np.argsort(loss[:, -1], kind="stable")]
    heights = np.diff(np.append(loss[:, -1], ref[-1]))
    return float(sum(h * _dominated_volume(loss[: i + 1, :-1], ref[:-1]) for i, h in enumerate(heights) if h > 0))


DENSITY_FLOOR = 0.01   # the log-density axis runs from density 1 down to this (100x compression)


def accuracy_density_hypervolume(points: Sequence[tuple[float, float]], chance: float = 0.0) -> float:
    """The area dominated by (accuracy, density) points in (log10 density, accuracy) space, normalised to 1.

    Density is clipped to [DENSITY_FLOOR, 1] and read on a log axis (density 1 is 0, 0.01 is 1), accuracy
    runs from `chance` (0) to 1 (1). On a linear density axis every decent front covers about 95% of the
    square and sweeps cannot be told apart; on the log axis the sparse end, where methods differ, counts.
    """
    scaled = []
    for accuracy, density in points:
        if not (_finite_number(accuracy) and _finite_number(density)):
            continue
        x = math.log10(min(max(density, DENSITY_FLOOR), 1.0)) / math.log10(DENSITY_FLOOR)
        y = min(max((accuracy - chance) / (1.0 - chance), 0.0), 1.0)
        scaled.append((x, y))
    # Both axes grow towards the corner (1, 1): negated, they are losses dominating the reference (0, 0).
    return _dominated_volume(-np.asarray(scaled), np.zeros(2)) if scaled else 0.0


def sweep_hypervolume(rows: Sequence[dict], metrics: Sequence[str], modes: Sequence[str]) -> tuple[float, str]:
    """The hypervolume a sweep reports (parent run, plot titles, `pareto`), with a few words on its definition.

    For the usual objectives (an accuracy to maximise, density to minimise) it is the log-density area
    above chance, comparable across sweeps and with benchmarks/search_quality.py; for any other objectives,
    the plain hypervolume against default_reference.
    """
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    pairs = {m: mode for m, mode in zip(metrics, modes)}
    accuracy = next((m for m, mode in pairs.items() if m.endswith("accuracy") and mode == "max"), None)
    if len(pairs) == 2 and accuracy and pairs.get("density") == "min":
        classes = [r["num_classes"] for r in complete if _finite_number(r.get("num_classes"))]
        chance = 1.0 / min(classes) if classes else 0.0
        volume = accuracy_density_hypervolume([(r.get(accuracy), r.get("density")) for r in complete], chance)
        return volume, f"log-density hypervolume {volume:.4f} ({accuracy} above chance {chance:.2g})"
    values = objective_matrix(complete, metrics)
    finite = values[np.isfinite(values).all(axis=1)]
    if not len(finite):
        return 0.0, "hypervolume 0 (no complete trial)"
    reference = default_reference(metrics, modes, finite)
    volume = hypervolume(finite, modes, reference)
    return volume, f"hypervolume {volume:.4g} (reference {', '.join(f'{r:.4g}' for r in reference)})"


def front_determines_hypervolume(metrics: Sequence[str], modes: Sequence[str]) -> bool:
    """Whether sweep_hypervolume of the front alone equals that of all rows: yes unless a reference point
    comes from the worst observed value (an unbounded metric), which dominated rows can move."""
    worst = [_bounds(m)[0] if mode == "max" else _bounds(m)[1] for m, mode in zip(metrics, modes)]
    return not any(math.isinf(w) for w in worst)


def default_reference(metrics: Sequence[str], modes: Sequence[str], values: np.ndarray | None = None) -> list[float]:
    """The worst point: the worst bound of a bounded metric, else the worst observed value.

    Accuracies and density live in [0, 1] and compression ratios in [1, inf); other
    metrics (losses, seconds) need `values` (an (n, k) array of the observed points).
    """
    signs = _signs(modes, len(metrics))
    observed = None if values is None else _as_matrix(values)
    reference = []
    for j, (metric, mode) in enumerate(zip(metrics, modes)):
        low, high = _bounds(metric)
        worst = low if mode == "max" else high
        if math.isinf(worst):
            require(observed is not None and observed.size > 0, f"no observed values of {metric} for a reference")
            column = observed[:, j] * signs[j]
            column = column[~np.isnan(column)]
            require(column.size > 0, f"no observed values of {metric} for a reference")
            worst = float(column.max() * signs[j])
        reference.append(worst)
    return reference


def _bounds(metric: str) -> tuple[float, float]:
    name = metric.rsplit(".", 1)[-1]
    if name.endswith("accuracy"):
        return 0.0, 1.0
    return _BOUNDS.get(name, (-math.inf, math.inf))


def _finite_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def objective_matrix(rows: Sequence[dict], metrics: Sequence[str]) -> np.ndarray:
    """An (n, k) float array of the rows' metrics; missing or non-numeric values become NaN."""
    return np.array(
        [[float(row[m]) if _finite_number(row.get(m)) else math.nan for m in metrics] for row in rows],
        dtype=float,
    ).reshape(len(rows), len(metrics))


def front_rows(rows: Sequence[dict], metrics: Sequence[str], modes: Sequence[str]) -> list[dict]:
    """The non-dominated COMPLETE rows, best first by the first metric (then the next ones).

    Only COMPLETE trials with finite values for every metric compete: a PRUNED trial's
    metrics are from a shortened run and must not push real results off the front.
    """
    signs = _signs(modes, len(metrics))
    eligible = [
        row for row in rows if row.get("state") == "COMPLETE" and all(_finite_number(row.get(m)) for m in metrics)
    ]
    if not eligible:
        return []
    mask = pareto_mask(objective_matrix(eligible, metrics), modes)
    front = [row for row, keep in zip(eligible, mask) if keep]
    return sorted(front, key=lambda row: tuple(float(row[m]) * s for m, s in zip(metrics, signs)))


def shown_metrics(metrics: Sequence[str]) -> list[str]:
    """The objectives as a reader of the front sees them: each val_* with its test_* twin beside it, so the
    optimism of choosing is visible."""
    shown = []
    for metric in metrics:
        shown += [metric, f"test_{metric.removeprefix('val_')}"] if metric.startswith("val_") else [metric]
    return shown


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
