"""Pictures of a sweep: the Pareto front (PNG and a light interactive HTML page) and Optuna study plots.

Only COMPLETE trials compete for the front; PRUNED ones are drawn hollow for context
and FAILED or RUNNING ones are not drawn. The PNG and the HTML page are one matplotlib
picture; the page is inline SVG with a tooltip per trial and the front as a table
(see html_figure for why not plotly). Every file is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sweeps.analysis.html_figure import Tooltips, table_html, write_page
from sweeps.analysis.pareto import objective_matrix, shown_metrics
from sweeps.records.results import is_step
from weightmom.contract import metric
from weightmom.errors import require
from weightmom.files import atomic_write


def _by_state(rows: Sequence[dict], metrics: Sequence[str], state: str) -> list[dict]:
    """Rows in `state` whose first two metrics are finite (plottable)."""
    chosen = [row for row in rows if row.get("state") == state]
    values = objective_matrix(chosen, metrics[:2])
    return [row for row, ok in zip(chosen, np.isfinite(values).all(axis=1)) if ok]


def _xy(rows: Sequence[dict], metrics: Sequence[str]) -> tuple[list[float], list[float]]:
    return [float(r[metrics[1]]) for r in rows], [float(r[metrics[0]]) for r in rows]


def _check(metrics: Sequence[str], modes: Sequence[str]) -> None:
    require(len(metrics) >= 2, f"a front plot needs two objectives, got {list(metrics)}")
    require(len(metrics) == len(modes), f"{len(metrics)} metrics but {len(modes)} modes")


def _front_line(front: Sequence[dict], metrics: Sequence[str]) -> tuple[list, list]:
    """The front sorted along x, for a staircase through its points."""
    points = sorted(zip(*_xy(front, metrics)))
    return [p[0] for p in points], [p[1] for p in points]


def _title(rows: Sequence[dict], front: Sequence[dict], quality: str) -> str:
    complete = [row for row in rows if row.get("state") == "COMPLETE"]
    none = " (none above chance)" if complete and not front else ""
    what = "complete trials and chain steps" if any(is_step(row) for row in rows) else "complete trials"
    return f"Pareto front: {len(front)} of {len(complete)} {what}{none}\n{quality}"


def _label(name: str, mode: str) -> str:
    return f"{name} ({'higher' if mode == 'max' else 'lower'} is better)"


def _log_x(name: str, xs: Sequence[float]) -> bool:
    """A log axis for a metric the objective table says spans decades (density, MACs), when every x is positive."""
    entry = metric(name.rsplit(".", 1)[-1])
    return entry is not None and entry.log_scale and bool(xs) and min(xs) > 0


def log_ticks(low: float, high: float) -> list[float]:
    """Readable ticks for a log axis over [low, high]: 1, 2 and 5 times powers of ten (0.02, 0.05, 0.1, 0.2),
    with 3 or every integer multiple added when the range is too narrow for two ticks."""
    require(0 < low <= high, f"a log axis needs 0 < low <= high, got {low}, {high}")
    decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
    for multiples in ((1, 2, 5), (1, 2, 3, 5), range(1, 10)):
        ticks = [float(f"{m}e{d}") for d in decades for m in multiples if low <= float(f"{m}e{d}") <= high]
        if len(ticks) >= 2:
            return ticks
    return ticks or [low, high]


def _set_log_x(ax, xs: Sequence[float]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    low, high = min(xs) / 1.15, max(xs) * 1.15   # the margin matplotlib would add
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _y_range(complete: Sequence[float], pruned: Sequence[float], mode: str) -> tuple[float, float] | None:
    """The y range of the complete trials, stretched towards the better side by stopped ones: one hopeless
    trial stopped early must not squash the front into a sliver. None: let matplotlib choose."""
    if len(complete) < 2:
        return None
    low, high = min(complete), max(complete)
    if mode == "max":
        high = max([high, *pruned])
    else:
        low = min([low, *pruned])
    margin = max(high - low, 0.01) * 0.15
    return low - margin, high + margin


def _hover(row: dict, metrics: Sequence[str]) -> str:
    """Trial id, state, the objectives and every config.* value: enough to rerun the point."""
    lines = [f"trial {row.get('trial_id')} ({str(row.get('state', '')).lower()})"]
    lines += [f"{m}: {_fmt(row.get(m))}" for m in shown_metrics(metrics)]
    lines += [f"{k.removeprefix('config.')}: {_fmt(v)}" for k, v in row.items()
              if k.startswith("config.") and v is not None]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def _front_figure(rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str],
                  quality: str, tooltips: Tooltips | None = None):
    """Scatter of the trials with the front as a staircase: x = metrics[1], y = metrics[0]; `quality` (the
    words of pareto.sweep_hypervolume, computed once by the caller) goes under the title.

    Uses matplotlib's object API on an Agg canvas, so it works headless and leaves the
    caller's pyplot state and backend alone. One artist per point, so each can carry a tooltip.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check(metrics, modes)
    complete, pruned = _by_state(rows, metrics, "COMPLETE"), _by_state(rows, metrics, "PRUNED")
    on_front = {row.get("trial_id") for row in front}
    y_range = _y_range(_xy(complete, metrics)[1], _xy(pruned, metrics)[1], modes[0])
    hidden = sum(not y_range[0] <= y <= y_range[1] for y in _xy(pruned, metrics)[1]) if y_range else 0
    figure = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    if front:
        fx, fy = _front_line(front, metrics)
        ax.step(fx, fy, where="post" if modes[1] == "min" else "pre", color="C3", linewidth=1.2, alpha=0.8)
    stopped = "pruned (stopped early" + (f"; {hidden} off the chart)" if hidden else ")")
    _scatter(ax, [(stopped, pruned, {"s": 22, "facecolors": "none", "edgecolors": "#aaaaaa"}),
                  ("complete", [r for r in complete if r.get("trial_id") not in on_front],
                   {"s": 22, "color": "#808080", "alpha": 0.7}),
                  ("Pareto front", _by_state(front, metrics, "COMPLETE"),
                   {"s": 40, "color": "C3", "edgecolors": "black", "linewidths": 0.6, "zorder": 3})],
             metrics, tooltips)
    all_x = _xy(complete + pruned, metrics)[0]
    if _log_x(metrics[1], all_x):
        _set_log_x(ax, all_x)
    if y_range:
        ax.set_ylim(*y_range)
    ax.set_xlabel(_label(metrics[1], modes[1]))
    ax.set_ylabel(_label(metrics[0], modes[0]))
    ax.set_title(_title(rows, front, quality), fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if complete or pruned:   # below the axes: a legend inside would hide points
        figure.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return figure


def _scatter(ax, layers: list[tuple[str, list[dict], dict]], metrics: Sequence[str], tooltips: Tooltips | None) -> None:
    """Each layer (legend label, rows, style) as one artist per point, so each point can carry a tooltip."""
    for label, chosen, style in layers:
        for i, row in enumerate(chosen):
            x, y = _xy([row], metrics)
            point = ax.scatter(x, y, label=label if i == 0 else None, **style)
            if tooltips is not None:
                tooltips.attach(point, _hover(row, metrics))


def front_png(rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str],
              path: str | Path, *, quality: str) -> None:
    figure = _front_figure(rows, front, metrics, modes, quality)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def front_html(rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str],
               path: str | Path, *, quality: str) -> None:
    """The front_png picture as a page with a tooltip per trial (its config), then the front as a table
    of the objectives and the config values that differ between trials (the searched ones)."""
    tooltips = Tooltips()
    figure = _front_figure(rows, front, metrics, modes, quality, tooltips)
    config = [k for k in dict.fromkeys(k for row in rows for k in row if k.startswith("config."))
              if len({repr(row.get(k)) for row in rows}) > 1]
    table_rows = [{"trial_id": r.get("trial_id"), **{m: r.get(m) for m in shown_metrics(metrics)},
                   **{k.removeprefix("config."): r.get(k) for k in config}} for r in front]
    columns = ["trial_id", *shown_metrics(metrics), *[k.removeprefix("config.") for k in config]]
    table = table_html(table_rows, columns, _fmt) if front else "<p>No complete trial above chance yet.</p>"
    write_page(path, f"Pareto front: {metrics[0]} vs {metrics[1]}", figure, tooltips,
               hint="Hover a point for its trial and config.", extra_html=f"<h3>The front</h3>\n{table}")
