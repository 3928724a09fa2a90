"""Pareto math, defined once: dominance, non-dominated sorting, crowding distance and the exact hypervolume.

Everything that ranks or scores objective vectors uses these: the sweep's front and its hypervolume
(analysis/), MO-ASHA's rungs and the frontier sampler (search/), and the benchmarks' replays.

Two forms of the same relation: `points` are tuples signed so that larger is better on every axis (MO-ASHA's
rungs), `values` are (n, k) arrays of raw metrics read with their modes ("max"/"min").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from weightmom.errors import require

MODES = ("max", "min")
Point = tuple[float, ...]   # objective values signed so that larger is better on every axis


def dominates(a: Point, b: Point) -> bool:
    """`a` is at least as good as `b` everywhere and better somewhere (equal points do not dominate)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """Non-dominated sorting: 0 for the first front, 1 for the front once it is removed, and so on."""
    if points and len(points[0]) == 1:   # ASHA's case: rank = how many distinct values are better
        better = sorted({p[0] for p in points}, reverse=True)
        return [better.index(p[0]) for p in points]
    if points and len(points[0]) == 2:
        return _ranks_2d(points)
    return _ranks_any(points)


def _ranks_2d(points: Sequence[Point]) -> list[int]:
    """Two objectives in O(n log n + n * fronts): in order of the first axis, best first, a point joins the
    first front whose latest member (its best on the second axis) does not dominate it."""
    ranks = [0] * len(points)
    latest: list[Point] = []
    for i in sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1])):
        p = points[i]
        k = next((k for k, q in enumerate(latest) if not dominates(q, p)), len(latest))
        if k == len(latest):
            latest.append(p)
        latest[k] = p
        ranks[i] = k
    return ranks


def _ranks_any(points: Sequence[Point]) -> list[int]:
    ranks = [-1] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def crowding(points: Sequence[Point], members: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of `members` (one front), each axis scaled to the front's range."""
    distance = {i: 0.0 for i in members}
    if len(members) <= 2:
        return {i: math.inf for i in members}
    for axis in range(len(points[members[0]])):
        ordered = sorted(members, key=lambda i: points[i][axis])
        low, high = points[ordered[0]][axis], points[ordered[-1]][axis]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[here] += (points[after][axis] - points[before][axis]) / (high - low)
    return distance


def signs(modes: Sequence[str], k: int) -> np.ndarray:
    """+1 for "min", -1 for "max": multiplying turns every objective into a minimisation."""
    require(len(modes) == k, f"{len(modes)} modes for {k} objectives")
    for mode in modes:
        require(mode in MODES, f"objective mode {mode!r}: expected one of {', '.join(MODES)}")
    return np.array([1.0 if mode == "min" else -1.0 for mode in modes])


def as_matrix(values: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 0)
    require(array.ndim == 2, f"objective values must be an (n, k) array, got shape {array.shape}")
    return array


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """True for the non-dominated rows of an (n, k) array (`dominates`, on the rows read with their modes).

    Equal points do not dominate each other, so every copy of a front point is kept;
    a row with any NaN is never on the front (and dominates nothing).
    """
    array = as_matrix(values)
    n, k = array.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    gain = -array * signs(modes, k)   # larger is better on every axis
    valid = np.flatnonzero(~np.isnan(gain).any(axis=1))
    mask = np.zeros(n, dtype=bool)
    ranks = pareto_ranks([tuple(row) for row in gain[valid].tolist()])
    mask[valid[np.asarray(ranks, dtype=int) == 0]] = True
    return mask


def hypervolume(values: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by the points and bounded by `reference` (a worst point).

    Points worse than the reference in any objective add nothing and NaN rows are
    ignored, so partial results never raise.
    """
    array = as_matrix(values)
    k = len(reference)
    sign = signs(modes, k)
    ref = np.asarray(reference, dtype=float) * sign
    require(bool(np.isfinite(ref).all()), f"hypervolume reference {list(reference)} must be finite")
    if array.size == 0:
        return 0.0
    require(array.shape[1] == k, f"{array.shape[1]} objectives but a {k}-dimensional reference")
    loss = array * sign
    inside = ~np.isnan(loss).any(axis=1) & (loss <= ref).all(axis=1)
    if not inside.any():
        return 0.0
    return dominated_volume(loss[inside], ref)


def dominated_volume(loss: np.ndarray, ref: np.ndarray) -> float:
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
    return float(sum(h * dominated_volume(loss[: i + 1, :-1], ref[:-1]) for i, h in enumerate(heights) if h > 0))


DENSITY_FLOOR = 0.01   # the log-density axis runs from density 1 down to this (100x compression)


def accuracy_density_hypervolume(points: Sequence[tuple[float, float]], chance: float = 0.0) -> float:
    """The area dominated by (accuracy, density) points in (log10 density, accuracy) space, normalised to 1.

    Density is clipped to [DENSITY_FLOOR, 1] and read on a log axis (density 1 is 0, 0.01 is 1), accuracy
    runs from `chance` (0) to 1 (1). On a linear density axis every decent front covers about 95% of the
    square and sweeps cannot be told apart; on the log axis the sparse end, where methods differ, counts.
    """
    scaled = []
    for accuracy, density in points:
        if not (finite_number(accuracy) and finite_number(density)):
            continue
        x = math.log10(min(max(density, DENSITY_FLOOR), 1.0)) / math.log10(DENSITY_FLOOR)
        y = min(max((accuracy - chance) / (1.0 - chance), 0.0), 1.0)
        scaled.append((x, y))
    # Both axes grow towards the corner (1, 1): negated, they are losses dominating the reference (0, 0).
    return dominated_volume(-np.asarray(scaled), np.zeros(2)) if scaled else 0.0


def finite_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
