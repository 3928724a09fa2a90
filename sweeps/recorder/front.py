"""The sweep's Pareto front, refreshed after every finished trial and at the end.

From the COMPLETE rows of trials.parquet: pareto.parquet, plots/front.txt and the parent run's
hypervolume, front_size and trials_finished every time; the plots (and their copies on the parent
run) at most every PLOTS_EVERY_S and at the end.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna

from sweeps.analysis import pareto, plots
from sweeps.analysis.study_plots import study_plots
from sweeps.records.mlflow_client import ResilientClient
from sweeps.records.results import recorded_name, write_rows
from sweeps.space.search_space import SearchSpace

log = logging.getLogger(__name__)

PLOTS_EVERY_S = 30.0   # plots cost the driver a second of CPU that trials on the same machine want


class FrontRefresh:
    """Writes the front's files and logs them, and the front's progress, on the sweep's parent run."""

    def __init__(self, space: SearchSpace, out: Path, parent_run_id: str, optuna_storage: str) -> None:
        self.space, self.out, self.parent_run_id, self.optuna_storage = space, out, parent_run_id, optuna_storage
        self.folder = out / "plots"
        self._plotted_at = 0.0

    def refresh(self, rows: list[dict], mlflow: ResilientClient, final: bool = False) -> None:
        """Recompute the front from the rows; the plots only when PLOTS_EVERY_S have passed, or when `final`."""
        metrics, modes = self.space.metrics, self.space.modes
        front = pareto.front_rows(rows, metrics, modes)
        self._write_front(front)
        # Computed once per refresh: the parent run's metric and the plot titles show this one value.
        volume, quality = pareto.sweep_hypervolume(rows, metrics, modes)
        step, now = sum(r["state"] == "COMPLETE" for r in rows), int(time.time() * 1000)
        mlflow.log_batch(self.parent_run_id, metrics=[
            ("hypervolume", float(volume), now, step),
            ("front_size", float(len(front)), now, step),
            ("trials_finished", float(len(rows)), now, step)])
        if not final and time.monotonic() - self._plotted_at < PLOTS_EVERY_S:
            return
        self._plotted_at = time.monotonic()
        for path in [*self._plots(rows, front, quality), self.folder / "front.txt"]:
            mlflow.log_artifact(self.parent_run_id, str(path), "pareto")
        if final:
            mlflow.log_artifact(self.parent_run_id, str(self.out / "pareto.parquet"), "pareto")

    def _write_front(self, front: list[dict]) -> None:
        write_rows(self.out / "pareto.parquet", front)
        self.folder.mkdir(exist_ok=True)
        (self.folder / "front.txt").write_text(pareto.format_table(front, front_columns(self.space)) + "\n")

    def _plots(self, rows: list[dict], front: list[dict], quality: str) -> list[Path]:
        """The front's PNG and page (when it has a point) and the study's pages: the files written."""
        metrics, modes = self.space.metrics, self.space.modes
        paths = []
        if front:
            paths = [self.folder / "pareto_front.png", self.folder / "pareto_front.html"]
            plots.front_png(rows, front, metrics, modes, paths[0], quality=quality)
            plots.front_html(rows, front, metrics, modes, paths[1], quality=quality)
        try:
            study = optuna.load_study(study_name=self.space.name, storage=self.optuna_storage)
            paths += study_plots(study, metrics, self.folder)
        except Exception as err:  # plots are a view; a sweep must not die for them
            log.warning("study plots skipped: %s", err)
        return paths


def front_columns(space: SearchSpace) -> list[str]:
    """What a reader of the front wants: the objectives (each val_* with its test_* twin), then the searched
    parameters."""
    return ["trial_id", *pareto.shown_metrics(space.metrics),
            *[f"config.{recorded_name(name)}" for name in space.params]]
