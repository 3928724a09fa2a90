"""`weightmom table DIR`: the method-vs-density table of a finished sweep, over seeds, with paired differences.

Cells are mean ± std of an accuracy over the COMPLETE trials that share a method and a target density
(and any `--by` keys). "WeightMom is better than X" is a paired statement: at each density, the
difference of the two methods on the same seed, its mean, its spread and a 95% t-interval. Overlapping
means are not evidence either way; an interval that excludes 0 is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from sweeps.analysis.best import train_config_of
from sweeps.records.folder import METHOD_PLOT, METHOD_TABLE, METHOD_TABLE_MD, MLFLOW_PENDING, PLOTS, SWEEP_STATE_FILE
from sweeps.records.results import sweep_rows, write_rows
from weightmom.errors import require
from weightmom.files import atomic_write

REFERENCE = "dense"
CHALLENGER = "weightmom"
METRICS = ("test_accuracy", "val_accuracy")


@dataclass(frozen=True)
class Cell:
    method: str
    density: float
    by: tuple           # values of the --by keys, in order
    values: dict        # seed -> accuracy

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if self.n > 1 else 0.0


@dataclass(frozen=True)
class Paired:
    baseline: str
    density: float
    by: tuple
    differences: list   # challenger - baseline, one per shared seed

    @property
    def n(self) -> int:
        return len(self.differences)

    def interval(self) -> tuple[float, float, float]:
        """Mean difference and its 95% t-interval (the interval is infinite with one pair)."""
        mean = statistics.fmean(self.differences)
        if self.n < 2:
            return mean, -math.inf, math.inf
        half = stats.t.ppf(0.975, self.n - 1) * statistics.stdev(self.differences) / math.sqrt(self.n)
        return mean, mean - half, mean + half

    def verdict(self) -> str:
        _, low, high = self.interval()
        if low > 0:
            return f"{CHALLENGER} better"
        if high < 0:
            return f"{self.baseline} better"
        return "within noise"


def complete_rows(folder: Path) -> list[dict]:
    """The sweep's COMPLETE trials, or one clear error saying why there are none."""
    require(folder.is_dir() and (folder / SWEEP_STATE_FILE).is_file(),
            f"{folder}: no sweep here ({SWEEP_STATE_FILE} missing)")
    rows = sweep_rows(folder, required=False)
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    require(bool(complete), f"{folder}: no COMPLETE trial to tabulate ({len(rows)} trials recorded)")
    return complete


def cells(rows: Sequence[dict], metric: str, by: Sequence[str] = ()) -> list[Cell]:
    """Group by (method, target density, --by values); within a group, one value per training seed."""
    for key in by:
        require(any(r.get(f"config.{key}") is not None for r in rows),
                f"--by {key}: no trial has config.{key}; varied keys: {', '.join(_varied(rows)) or 'none'}")
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row.get(metric) is None:
            continue
        config = train_config_of(row)
        key = (config.method, config.target_density, tuple(row.get(f"config.{k}") for k in by))
        groups.setdefault(key, {})[config.seed] = float(row[metric])
    return [Cell(m, d, b, values) for (m, d, b), values in sorted(groups.items(), key=_order)]


def paired(table: Sequence[Cell]) -> list[Paired]:
    """Challenger minus each baseline, seed by seed, at each density (and --by values)."""
    index = {(c.method, c.density, c.by): c for c in table}
    out = []
    for cell in table:
        if cell.method in (CHALLENGER, REFERENCE):
            continue
        challenger = index.get((CHALLENGER, cell.density, cell.by))
        if challenger is None:
            continue
        seeds = sorted(set(cell.values) & set(challenger.values))
        if seeds:
            out.append(Paired(cell.method, cell.density, cell.by,
                              [challenger.values[s] - cell.values[s] for s in seeds]))
    return out


def _order(item: tuple) -> tuple:
    (method, density, by), _ = item
    return (method != REFERENCE, method != CHALLENGER, method, -density, tuple(map(str, by)))


def _varied(rows: Sequence[dict]) -> list[str]:
    keys = sorted({k for r in rows for k in r if k.startswith("config.")})
    return [k.removeprefix("config.") for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


# --------------------------------------------------------------------------- rendering

def markdown(table: Sequence[Cell], metric: str, by: Sequence[str] = ()) -> str:
    """Rows = methods (dense first), columns = target densities, cells = mean ± std (n)."""
    densities = sorted({c.density for c in table}, reverse=True)
    heads = sorted({(c.method, c.by) for c in table}, key=lambda h: _order(((h[0], 1.0, h[1]), None)))
    index = {(c.method, c.by, c.density): c for c in table}
    label = lambda method, b: method + "".join(f", {k}={v}" for k, v in zip(by, b))  # noqa: E731
    lines = [f"| {metric} | " + " | ".join(f"{d:g}" for d in densities) + " |",
             "|---|" + "---|" * len(densities)]
    for method, b in heads:
        row = [_cell(index.get((method, b, d))) for d in densities]
        lines.append(f"| {label(method, b)} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _cell(cell: Cell | None) -> str:
    return "" if cell is None else f"{cell.mean:.4f} ± {cell.std:.4f} (n={cell.n})"


def paired_markdown(pairs: Sequence[Paired], metric: str, by: Sequence[str] = ()) -> str:
    lines = [f"| {CHALLENGER} − baseline ({metric}) | density | mean difference | 95% interval | pairs | "
             "verdict |", "|---|---|---|---|---|---|"]
    for p in pairs:
        mean, low, high = p.interval()
        extra = "".join(f", {k}={v}" for k, v in zip(by, p.by))
        lines.append(f"| {p.baseline}{extra} | {p.density:g} | {mean:+.4f} | [{low:+.4f}, {high:+.4f}] | {p.n} | "
                     f"{p.verdict()} |")
    if not pairs:
        lines.append(f"| (no {CHALLENGER} trials to pair with) | | | | | |")
    return "\n".join(lines)


def accuracy_plot(table: Sequence[Cell], metric: str, path: Path) -> None:
    """Accuracy against density on a log axis, one line per method with std error bars, dense as a band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for method in dict.fromkeys(c.method for c in table):
        points = sorted((c.density, c.mean, c.std) for c in table if c.method == method)
        if method == REFERENCE:
            _, mean, std = points[-1]
            ax.axhspan(mean - std, mean + std, color="#cccccc", alpha=0.6, label=f"{REFERENCE} (mean ± std)")
            ax.axhline(mean, color="#777777", linewidth=1)
            continue
        xs, ys, errs = zip(*points)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, linewidth=1.3, label=method)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(
        math.log10(v))) in (2, 5) else ""))
    ax.set_xlabel("density (fraction of prunable weights kept, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against density: mean ± std over seeds", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def long_rows(tables: dict[str, list[Cell]], by: Sequence[str]) -> list[dict]:
    """table.parquet: one row per (metric, method, target density, --by values)."""
    return [{"metric": metric, "method": c.method, "target_density": c.density, **dict(zip(by, c.by)),
             "mean": c.mean, "std": c.std, "n": c.n, "seeds": sorted(c.values)}
            for metric, table in tables.items() for c in table]


def write_table(folder: Path, by: Sequence[str] = ()) -> tuple[str, list[Path]]:
    """Compute every table from the sweep in `folder`; write table.md, table.parquet and the plot."""
    rows = complete_rows(folder)
    tables = {metric: cells(rows, metric, by) for metric in METRICS}
    tables = {metric: table for metric, table in tables.items() if table}
    require("test_accuracy" in tables, f"{folder}: the COMPLETE trials report no test_accuracy")
    sections = [f"# {folder.name}: accuracy by method and target density\n",
                "Mean ± std over training seeds (n = seeds). Test accuracy is the measurement; validation "
                "accuracy is what the sweep chose on.\n"]
    for metric, table in tables.items():
        sections += [f"## {metric}\n", markdown(table, metric, by), ""]
    sections += ["## Paired differences (same seed)\n", paired_markdown(paired(tables["test_accuracy"]),
                                                                        "test_accuracy", by), ""]
    text = "\n".join(sections)
    (folder / PLOTS).mkdir(exist_ok=True)
    paths = [folder / METHOD_TABLE_MD, folder / METHOD_TABLE, folder / PLOTS / METHOD_PLOT]
    atomic_write(paths[0], lambda tmp: Path(tmp).write_text(text))
    write_rows(paths[1], long_rows(tables, by))
    accuracy_plot(tables["test_accuracy"], "test_accuracy", paths[2])
    return text, paths


def log_to_parent_run(folder: Path, paths: Sequence[Path]) -> None:
    """Attach the table and plot to the sweep's parent MLflow run (queued if the server is down)."""
    from sweeps.records.mlflow_client import ResilientClient
    from sweeps.records.state import load_state

    state = load_state(folder)
    client = ResilientClient(state.tracking_uri, folder / MLFLOW_PENDING)
    for path in paths:
        client.log_artifact(state.parent_run_id, str(path), "table")
    client.flush(force=True)
