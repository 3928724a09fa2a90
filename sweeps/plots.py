"""Pictures of a sweep: the Pareto front (PNG and self-contained HTML) and Optuna study plots.

Only COMPLETE trials compete for the front; PRUNED ones are drawn hollow for context
and FAILED or RUNNING ones are not drawn. Every file is written atomically, and the
HTML embeds plotly.js because the MLflow UI shows artifacts offline.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.pareto import objective_matrix, sweep_hypervolume
from weightmom.errors import require
from weightmom.files import atomic_write

_LOG_SCALE = ("density", "compression_ratio")  # spans decades in a pruning sweep


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


def _title(rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str]) -> str:
    complete = [row for row in rows if row.get("state") == "COMPLETE"]
    _, volume = sweep_hypervolume(rows, metrics, modes)
    return f"Pareto front: {len(front)} of {len(complete)} complete trials, {volume}"


def _label(metric: str, mode: str) -> str:
    return f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)"


def _log_x(metric: str, xs: Sequence[float]) -> bool:
    return metric.rsplit(".", 1)[-1] in _LOG_SCALE and bool(xs) and min(xs) > 0


def _two_five(value: float, _position: object) -> str:
    """Label the 2x and 5x minor ticks of a log axis: readable without crowding."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def front_png(
    rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str], path: str | Path
) -> None:
    """Scatter of the trials with the front as a staircase: x = metrics[1], y = metrics[0].

    Uses matplotlib's object API on an Agg canvas, so it works headless and leaves the
    caller's pyplot state and backend alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    _check(metrics, modes)
    complete, pruned = _by_state(rows, metrics, "COMPLETE"), _by_state(rows, metrics, "PRUNED")
    figure = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    if pruned:
        ax.scatter(*_xy(pruned, metrics), s=22, facecolors="none", edgecolors="#bbbbbb", label="pruned (early stop)")
    if complete:
        ax.scatter(*_xy(complete, metrics), s=22, color="#808080", alpha=0.7, label="complete")
    if front:
        fx, fy = _front_line(front, metrics)
        where = "post" if modes[1] == "min" else "pre"
        ax.step(fx, fy, where=where, color="C3", linewidth=1.2, alpha=0.8)
        ax.scatter(fx, fy, s=40, color="C3", edgecolors="black", linewidths=0.6, zorder=3, label="Pareto front")
    all_x = _xy(complete + pruned, metrics)[0]
    if _log_x(metrics[1], all_x):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_five))
    ax.set_xlabel(_label(metrics[1], modes[1]))
    ax.set_ylabel(_label(metrics[0], modes[0]))
    ax.set_title(_title(rows, front, metrics, modes), fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if complete or pruned:
        ax.legend(loc="best", fontsize=8)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def _hover(row: dict, metrics: Sequence[str]) -> str:
    """Trial id, the objectives and every config.* value: enough to rerun the point."""
    lines = [f"trial {row.get('trial_id')}"]
    lines += [f"{m}: {_fmt(row.get(m))}" for m in metrics]
    lines += [f"{k}: {_fmt(v)}" for k, v in row.items() if k.startswith("config.") and v is not None]
    return "<br>".join(html.escape(line) for line in lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def front_html(
    rows: Sequence[dict], front: Sequence[dict], metrics: Sequence[str], modes: Sequence[str], path: str | Path
) -> None:
    """The front_png picture as a self-contained interactive plotly page with per-trial hover."""
    import plotly.graph_objects as go

    _check(metrics, modes)
    figure = go.Figure()
    layers = [
        (
            "pruned (early stop)",
            _by_state(rows, metrics, "PRUNED"),
            {"color": "rgba(0,0,0,0)", "line": {"color": "#bbbbbb", "width": 1}},
        ),
        ("complete", _by_state(rows, metrics, "COMPLETE"), {"color": "#808080", "opacity": 0.7}),
    ]
    for name, chosen, marker in layers:
        if chosen:
            x, y = _xy(chosen, metrics)
            text = [_hover(row, metrics) for row in chosen]
            figure.add_scatter(
                x=x, y=y, mode="markers", name=name, marker=marker, text=text, hovertemplate="%{text}<extra></extra>"
            )
    if front:
        ordered = sorted(front, key=lambda row: float(row[metrics[1]]))
        x, y = _xy(ordered, metrics)
        figure.add_scatter(
            x=x,
            y=y,
            mode="lines+markers",
            name="Pareto front",
            line={"shape": "hv" if modes[1] == "min" else "vh", "color": "#d62728"},
            marker={"size": 9, "color": "#d62728", "line": {"color": "black", "width": 1}},
            text=[_hover(row, metrics) for row in ordered],
            hovertemplate="%{text}<extra></extra>",
        )
    plotted_x = [xv for trace in figure.data for xv in trace.x]
    figure.update_layout(
        title=_title(rows, front, metrics, modes),
        xaxis_title=_label(metrics[1], modes[1]),
        yaxis_title=_label(metrics[0], modes[0]),
        xaxis_type="log" if _log_x(metrics[1], plotted_x) else "linear",
        template="plotly_white",
    )
    atomic_write(path, lambda tmp: figure.write_html(tmp, include_plotlyjs=True, full_html=True))


def _complete_trials(study: optuna.Study, target: Callable[[FrozenTrial], float]) -> list[FrozenTrial]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if t.params and math.isfinite(target(t))]


def _some_param_varies(trials: Sequence[FrozenTrial]) -> bool:
    """Importance is undefined when every trial used the same parameters."""
    names = {name for t in trials for name in t.params}
    return any(len({repr(t.params.get(name)) for t in trials}) > 1 for name in names)


def study_plots(study: optuna.Study, metrics: Sequence[str], directory: str | Path) -> list[Path]:
    """Parameter importances and parallel coordinates for the primary objective, as HTML.

    Returns the files written; a plot the study cannot support yet (importance needs two
    complete trials with a varying parameter, parallel coordinates one) is skipped.
    """
    require(len(metrics) >= 1 and len(metrics) == len(study.directions), "one metric name per study objective")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def primary(trial: FrozenTrial) -> float:
        return trial.values[0]

    # PED-ANOVA (optuna's default evaluator) ranks parameters by how they reach *low*
    # target values; negate a maximised objective so "important" means "for the best".
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def importance_target(trial: FrozenTrial) -> float:
        return sign * trial.values[0]

    trials = _complete_trials(study, primary)
    written = []
    if len(trials) >= 2 and _some_param_varies(trials):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*computes the importances of params to achieve low")
            warnings.filterwarnings("ignore", message=".*have less than 2 trials")  # normal for small sweeps
            figure = optuna.visualization.plot_param_importances(
                study, target=importance_target, target_name=metrics[0]
            )
        written.append(_write_html(figure, directory / "param_importances.html"))
    if trials:
        figure = optuna.visualization.plot_parallel_coordinate(study, target=primary, target_name=metrics[0])
        written.append(_write_html(figure, directory / "parallel_coordinates.html"))
    return written


def _write_html(figure: object, path: Path) -> Path:
    atomic_write(path, lambda tmp: figure.write_html(tmp, include_plotlyjs=True, full_html=True))
    return path
