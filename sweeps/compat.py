"""Old module names, kept for one release so that sweeps started before the move into wings resume.

Ray pickles the recorder, the searcher and the space into its experiment snapshot by module name
(`sweeps.callback.SweepRecorder`, ...). Unpickling one written by the flat layout imports those
names; this table sends each to the module that now holds the same objects. Keep each name for one
release after the one that moved it (0.2 for both the wings and the renames of 0.1.x), then remove it
with its case in tests/test_compat.py.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

OLD_MODULES = {  # flat layout (0.1) -> wing (0.2)
    "sweeps.space_schema": "sweeps.space.schema",
    "sweeps.space_checks": "sweeps.space.checks",
    "sweeps.samplers": "sweeps.search.samplers",
    "sweeps.searcher": "sweeps.search.searcher",
    "sweeps.requeue": "sweeps.records.requeue",
    "sweeps.results": "sweeps.records.results",
    "sweeps.mlflow_client": "sweeps.records.mlflow_client",
    "sweeps.mlflow_ui": "sweeps.records.mlflow_ui",
    "sweeps.pareto": "sweeps.analysis.pareto",
    "sweeps.html_figure": "sweeps.analysis.html_figure",
    "sweeps.plots": "sweeps.analysis.plots",
    "sweeps.study_plots": "sweeps.analysis.study_plots",
    "sweeps.best": "sweeps.analysis.best",
    "sweeps.table": "sweeps.analysis.method_table",
    "sweeps.callback": "sweeps.bookkeeping.recorder",
    "sweeps.front": "sweeps.bookkeeping.front",
    "sweeps.run_log": "sweeps.bookkeeping.run_log",
    "sweeps.trial_rows": "sweeps.bookkeeping.trial_rows",
    "sweeps.runner": "sweeps.execution.runner",
    "sweeps.trial": "sweeps.execution.trial",
    "sweeps.recovery": "sweeps.execution.recovery",
    "sweeps.ray_session": "sweeps.execution.ray_session",
    "sweeps.storage": "sweeps.execution.storage",
    "sweeps.code_dir": "sweeps.execution.code_dir",
    # renamed in 0.1.x, so that each name says what its module holds (recorder/ read too much like records/)
    "sweeps.recorder": "sweeps.bookkeeping",
    "sweeps.recorder.recorder": "sweeps.bookkeeping.recorder",
    "sweeps.recorder.front": "sweeps.bookkeeping.front",
    "sweeps.recorder.run_log": "sweeps.bookkeeping.run_log",
    "sweeps.recorder.trial_rows": "sweeps.bookkeeping.trial_rows",
    "sweeps.search.fifo": "sweeps.search.live_trials",
    "sweeps.analysis.export": "sweeps.analysis.export_sweep",
}
# `sweeps.space` is now a package; the old module's names resolve through its __getattr__.


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and hands back the new module itself: one module object under two names."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in OLD_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(OLD_MODULES[spec.name])

    def exec_module(self, module):
        pass   # already executed under its new name; importlib files it under the old one too


def install() -> None:
    """Put the alias finder first on sys.meta_path, once (idempotent). First: an old package's name
    (sweeps.recorder) is the new package, so the path finder would load its submodules a second time under
    the old name, with classes of their own, before an alias finder further down was asked."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
