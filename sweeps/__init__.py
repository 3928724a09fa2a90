"""WeightMom Sweeps: Ray Tune runs the trials, Optuna chooses them, MLflow shows them.

The public API, for a notebook or a benchmark (imported lazily, PEP 562, so `import sweeps` is cheap):

    from sweeps import SweepOptions, load_space, run_sweep, sweep_points, pick
    rows = run_sweep(load_space("digits-quick"), SweepOptions(out=Path("runs/nb")))
    best = pick(sweep_points("runs/nb"), max_density=0.1)   # every trial's row (and chain step's), journals read

The wings, lowest first; a wing imports only from the ones below it (tests/test_layers.py): basis
(Pareto math, the names of samplers and promotions), space (search spaces as data), records (the sweep
folder's state, Parquet tables, the MLflow client), search (Optuna samplers, the searcher, the
early-stopping scheduler), analysis (Pareto front, hypervolume, plots, best, the method table),
bookkeeping (the Ray callback that keeps the books), execution (the run loop, trials, recovery, local Ray).
cli.py and cluster_check.py stand on top.
"""

from __future__ import annotations

import importlib
from typing import Any

from sweeps import compat

compat.install()

_EXPORTS = {
    "SweepOptions": "sweeps.execution.runner",
    "run_sweep": "sweeps.execution.runner",
    "load_space": "sweeps.space.search_space",
    "SearchSpace": "sweeps.space.search_space",
    "read_table": "sweeps.records.results",
    "sweep_rows": "sweeps.records.results",
    "sweep_points": "sweeps.records.results",
    "load_state": "sweeps.records.state",
    "pick": "sweeps.analysis.best",
    "NothingQualifies": "sweeps.analysis.best",
    "export_source": "sweeps.analysis.export_sweep",
    "hypervolume": "sweeps.basis.dominance",
    "accuracy_density_hypervolume": "sweeps.basis.dominance",
    "sweep_hypervolume": "sweeps.analysis.pareto",
    "front_rows": "sweeps.analysis.pareto",
    "Rungs": "sweeps.search.moasha",
    "dominates": "sweeps.basis.dominance",
    "make_sampler": "sweeps.search.samplers",
    "LAST_RESULT": "sweeps.search.frontier",
    "FrontierSampler": "sweeps.search.frontier",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
