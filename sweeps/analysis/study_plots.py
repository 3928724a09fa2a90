"""The Optuna study as two light HTML pages: which parameters mattered, and where each trial went.

Drawn with matplotlib into inline SVG (see html_figure) rather than with optuna.visualization:
its plotly pages embed plotly.js (4.8 MB each), its importance plot does not say which objective
it ranks for, and its parallel coordinates cut long axis labels and show "None" on numeric axes
for trials without a conditional parameter. Axes here use the names the runs use (target_density).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeps.analysis.html_figure import Tooltips, write_page
from sweeps.analysis.plots import log_ticks
from sweeps.records.folder import IMPORTANCES_HTML, PARALLEL_HTML
from sweeps.records.results import recorded_name
from weightmom.errors import require


def study_plots(study: optuna.Study, metrics: Sequence[str], directory: str | Path) -> list[Path]:
    """Parameter importances for the primary objective and parallel coordinates, as HTML.

    Returns the files written; a plot the study cannot support yet (importance needs two
    complete trials with a varying parameter, parallel coordinates one) is skipped.
    """
    require(len(metrics) >= 1 and len(metrics) == len(study.directions), "one metric name per study objective")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.params and math.isfinite(t.values[0])]
    written = []
    if len(trials) >= 2 and _some_param_varies(trials):
        written.append(importance_page(study, len(trials), metrics, directory / IMPORTANCES_HTML))
    if trials:
        written.append(parallel_page(trials, metrics, directory / PARALLEL_HTML))
    return written


def _some_param_varies(trials: Sequence[FrozenTrial]) -> bool:
    """Importance is undefined when every trial used the same parameters."""
    names = {name for t in trials for name in t.params}
    return any(len({repr(t.params.get(name)) for t in trials}) > 1 for name in names)


def _better(direction: optuna.study.StudyDirection) -> str:
    return "higher" if direction == optuna.study.StudyDirection.MAXIMIZE else "lower"


def importance_page(study: optuna.Study, n_trials: int, metrics: Sequence[str], path: Path) -> Path:
    """A horizontal bar per parameter, most important on top, titled with the objective it ranks for."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # PED-ANOVA (optuna's default evaluator) ranks parameters by how they reach *low* target
    # values; negate a maximised objective so "important" means "for the best".
    sign = -1.0 if _better(study.directions[0]) == "higher" else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*computes the importances of params to achieve low")
        warnings.filterwarnings("ignore", message=".*have less than 2 trials")  # normal for small sweeps
        importances = optuna.importance.get_param_importances(study, target=lambda t: sign * t.values[0])
    names = list(importances)[::-1]
    figure = Figure(figsize=(7, 1.6 + 0.38 * len(names)), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    bars = ax.barh(range(len(names)), [importances[n] for n in names], color="#4c78a8")
    tooltips = Tooltips()
    for bar, name in zip(bars, names):
        tooltips.attach(bar, f"{recorded_name(name)}: importance {importances[name]:.3f}")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=3)
    ax.set_yticks(range(len(names)), labels=[recorded_name(n) for n in names])
    ax.set_xlabel("importance (shares sum to 1)")
    ax.set_xlim(0, max(importances.values(), default=1.0) * 1.15 or 1.0)
    title = f"Hyperparameter importance for {metrics[0]} ({_better(study.directions[0])} is better)"
    ax.set_title(f"{title}\nPED-ANOVA over {n_trials} complete trials", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    write_page(path, title, figure, tooltips, hint="Hover a bar for its value. Importance says which parameters "
               f"explain the best {metrics[0]} values among the trials so far, not which direction helps.")
    return path


@dataclass(frozen=True)
class _Axis:
    label: str
    positions: list[float | None]   # per trial, in [0, 1]; None where the trial lacks the parameter
    ticks: list[tuple[float, str]]


def _numeric_axis(label: str, values: list, log: bool = False, integer: bool = False) -> _Axis:
    from matplotlib.ticker import MaxNLocator

    present = [float(v) for v in values if v is not None]
    low, high = min(present), max(present)
    log = log and low > 0
    scale = math.log10 if log else (lambda v: v)
    span = scale(high) - scale(low)

    def position(v: float) -> float:
        return 0.5 if span == 0 else (scale(v) - scale(low)) / span

    if span == 0:
        ticks = [low]
    elif log:
        ticks = log_ticks(low, high)
    else:
        ticks = [t for t in MaxNLocator(5, integer=integer).tick_values(low, high) if low <= t <= high]
    return _Axis(label, [None if v is None else position(float(v)) for v in values],
                 [(position(t), f"{t:g}") for t in ticks])


def _categorical_axis(label: str, values: list, choices: Sequence) -> _Axis:
    used = [c for c in choices if c in values] or sorted({v for v in values if v is not None}, key=str)
    step = 1 / (len(used) - 1) if len(used) > 1 else 0.0

    def position(v) -> float:
        return 0.5 if len(used) == 1 else used.index(v) * step

    return _Axis(label, [None if v is None else position(v) for v in values],
                 [(position(c), str(c)) for c in used])


def _parallel_axes(trials: Sequence[FrozenTrial], metrics: Sequence[str]) -> list[_Axis]:
    """The objectives, then parameters every trial has, then conditional ones (so most lines run unbroken)."""
    axes = [_numeric_axis(m, [t.values[i] for t in trials]) for i, m in enumerate(metrics)]
    names = list(dict.fromkeys(name for t in trials for name in t.params))
    names.sort(key=lambda name: not all(name in t.params for t in trials))
    for name in names:
        values = [t.params.get(name) for t in trials]
        distribution = next(t.distributions[name] for t in trials if name in t.distributions)
        if isinstance(distribution, CategoricalDistribution):
            axes.append(_categorical_axis(recorded_name(name), values, distribution.choices))
        elif isinstance(distribution, (FloatDistribution, IntDistribution)):
            axes.append(_numeric_axis(recorded_name(name), values, distribution.log,
                                      integer=isinstance(distribution, IntDistribution)))
    return axes


def _hover(trial: FrozenTrial, metrics: Sequence[str]) -> str:
    lines = [f"trial #{trial.number}"] + [f"{m}: {v:.4g}" for m, v in zip(metrics, trial.values)]
    lines += [f"{recorded_name(k)}: {v:.4g}" if isinstance(v, float) else f"{recorded_name(k)}: {v}"
              for k, v in trial.params.items()]
    return "\n".join(lines)


def parallel_page(trials: Sequence[FrozenTrial], metrics: Sequence[str], path: Path) -> Path:
    """One line per complete trial across the objectives and the parameters, coloured by the primary objective."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    axes = _parallel_axes(trials, metrics)
    figure = Figure(figsize=(max(7.0, 1.1 * len(axes) + 1.5), 5.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    primary = [t.values[0] for t in trials]
    norm, cmap = Normalize(min(primary), max(primary)), colormaps["viridis"]
    tooltips = Tooltips()
    for row, trial in enumerate(trials):
        points = [(i, axis.positions[row]) for i, axis in enumerate(axes) if axis.positions[row] is not None]
        (line,) = ax.plot(*zip(*points), color=cmap(norm(trial.values[0])), linewidth=1.4, alpha=0.85)
        tooltips.attach(line, _hover(trial, metrics))
    for i, axis in enumerate(axes):
        ax.axvline(i, color="#444444", linewidth=0.8, zorder=0)
        ax.text(i, 1.05, axis.label.replace(".", ".\n"), ha="center", va="bottom", fontsize=9)
        for position, text in axis.ticks:
            ax.text(i + 0.04, position, text, ha="left", va="center", fontsize=8.5, color="#333333",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    ax.set_xlim(-0.2, len(axes) - 0.4)
    ax.set_ylim(-0.05, 1.2)
    ax.axis("off")
    figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=metrics[0], shrink=0.8)
    title = f"Parallel coordinates: {len(trials)} complete trials, coloured by {metrics[0]}"
    ax.set_title(title, fontsize=10, loc="left")   # left: still in view when a narrow page scrolls sideways
    write_page(path, title, figure, tooltips, hint="Hover a line for its trial. A trial without a conditional "
               "parameter (set only for some methods) skips that axis.")
    return path
