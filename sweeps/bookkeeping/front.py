"""The sweep's Pareto front, refreshed after every finished trial (or chain step) and at the end.

From the COMPLETE rows of trials.parquet and steps.parquet (a chain's steps are points too): pareto.parquet,
plots/front.txt and the parent run's hypervolume, front_size and trials_finished every time; the plots (and
their copies on the parent run) at most every PLOTS_EVERY_S and at the end.

After a trial, the front is updated from the old front and the new row only (the front is small, the
rows many: recomputing from all rows cost every trial time in proportion to the trials before), and
its files are rewritten only when it changed. The first refresh of a driver, and the last, use all rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from sweeps.analysis import pareto, plots
from sweeps.analysis.front_table import front_columns
from sweeps.analysis.study_plots import study_plots
from sweeps.records.folder import FRONT, FRONT_HTML, FRONT_PNG, FRONT_TEXT, PLOTS
from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import is_step, write_rows
from sweeps.space.search_space import SearchSpace

log = logging.getLogger(__name__)

PLOTS_EVERY_S = 30.0   # plots cost the driver a second of CPU that trials on the same machine want
# ... and more as the sweep grows (the study's plots draw every trial): a round of plots waits at least
# PLOTS_SPACING times the last round's duration, so plots take at most 1/PLOTS_SPACING of the driver's time
# (measured before this: 180 of 425 s of a 65-trial sweep's driver on a loaded machine, benchmarks/driver_scale.py).
PLOTS_SPACING = 20.0


class FrontRefresh:
    """Writes the front's files and logs them, and the front's progress, on the sweep's parent run."""

    _front: list[dict] | None = None   # class defaults: a FrontRefresh unpickled from an older snapshot lacks them
    _seen: dict[str, str] = {}         # never mutated before _update assigns the instance's own

    def __init__(self, space: SearchSpace, out: Path, parent_run_id: str, optuna_storage: str) -> None:
        self.space, self.out, self.parent_run_id, self.optuna_storage = space, out, parent_run_id, optuna_storage
        self.folder = out / PLOTS
        self._plotted_at, self._plot_s = 0.0, 0.0
        self._front: list[dict] | None = None   # with the ids of the rows seen and how many are COMPLETE
        self._seen: dict[str, str] = {}

    def __getstate__(self) -> dict:   # rebuilt from all rows by a resumed driver's first refresh
        return {**self.__dict__, "_front": None, "_seen": {}}

    def refresh(self, rows: Callable[[], list[dict]], mlflow: ResilientClient, final: bool = False,
                new: dict | None = None) -> None:
        """Update the front with the `new` row (from all `rows()` when there is none, or on the first and
        `final` refresh); the plots only when PLOTS_EVERY_S have passed, or when `final`."""
        metrics, modes = self.space.metrics, self.space.modes
        changed = self._update(rows, new, final)
        if changed:
            self._write_front(self._front)
        every = self._front if pareto.front_determines_hypervolume(metrics, modes) else None
        # Computed once per refresh: the parent run's metric and the plot titles show this one value.
        volume, quality = pareto.sweep_hypervolume(every if every is not None else rows(), metrics, modes)
        step, now = sum(s == "COMPLETE" for s in self._seen.values()), int(time.time() * 1000)
        mlflow.log_batch(self.parent_run_id, metrics=[
            ("hypervolume", float(volume), now, step),
            ("front_size", float(len(self._front)), now, step),
            ("trials_finished", float(len(self._seen)), now, step)])
        wait = max(PLOTS_EVERY_S, PLOTS_SPACING * getattr(self, "_plot_s", 0.0))
        if not final and time.monotonic() - self._plotted_at < wait:
            return
        start = time.monotonic()
        for path in [*self._plots(rows(), self._front, quality), self.folder / FRONT_TEXT]:
            mlflow.log_artifact(self.parent_run_id, str(path), "pareto")
        if final:
            mlflow.log_artifact(self.parent_run_id, str(self.out / FRONT), "pareto")
        self._plotted_at = time.monotonic()
        self._plot_s = self._plotted_at - start

    def _update(self, rows: Callable[[], list[dict]], new: dict | None, full: bool) -> bool:
        """The front after `new` (or from all rows); whether it changed."""
        metrics, modes = self.space.metrics, self.space.modes
        if new is None or full or self._front is None:
            every = rows()
            self._seen = {r["trial_id"]: r["state"] for r in every if not is_step(r)}
            self._front = pareto.front_rows(every, metrics, modes)
            return True
        if not is_step(new):   # a chain's step is a point on the front, not a trial
            self._seen[new["trial_id"]] = new["state"]
        old = [r for r in self._front if r["trial_id"] != new["trial_id"]]
        front = pareto.front_rows([*old, new], metrics, modes)
        changed = len(old) != len(self._front) or [r["trial_id"] for r in front] != [r["trial_id"] for r in old]
        self._front = front
        return changed

    def _write_front(self, front: list[dict]) -> None:
        write_rows(self.out / FRONT, front)
        self.folder.mkdir(exist_ok=True)
        (self.folder / FRONT_TEXT).write_text(pareto.format_table(front, front_columns(self.space)) + "\n")

    def _plots(self, rows: list[dict], front: list[dict], quality: str) -> list[Path]:
        """The front's PNG and page (drawn as soon as a trial has a row, even when no trial is above chance yet)
        and the study's pages: the files written."""
        metrics, modes = self.space.metrics, self.space.modes
        paths = []
        if rows and len(metrics) >= 2:   # one objective: a best trial, not a front to draw
            paths = [self.folder / FRONT_PNG, self.folder / FRONT_HTML]
            plots.front_png(rows, front, metrics, modes, paths[0], quality=quality)
            plots.front_html(rows, front, metrics, modes, paths[1], quality=quality)
        try:
            study = optuna.load_study(study_name=self.space.name, storage=self.optuna_storage)
            paths += study_plots(study, metrics, self.folder)
        except Exception as err:  # plots are a view; a sweep must not die for them
            log.warning("study plots skipped: %s", err)
        return paths
