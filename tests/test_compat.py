"""Sweeps started by older layouts (0.1's flat one, 0.1.x's wings before the renames) keep resuming
(sweeps/compat.py).

Ray pickles the recorder, the searcher and the space into its experiment snapshot by module name. The
fast test unpickles those names; the slow one runs a sweep with an old layout's own code (from this
repository's history), interrupts it, and resumes it with today's code through the normal path.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeps import compat
from sweeps.records.results import sweep_rows
from tests.sweep_helpers import child_runs_by_trial, rows_so_far, run_until, write_space

REPO = Path(__file__).resolve().parents[1]
FLAT_LAYOUT = "5942dc9"   # the last commit of the flat layout (0.1)
WINGS_LAYOUT = "6cfc9b4"  # the last commit before the renames of 0.1.x (recorder/, search/fifo.py)
# What each layout's snapshot must name, and must not (today's names).
LAYOUTS = {FLAT_LAYOUT: (b"sweeps.callback", b"sweeps.recorder"),
           WINGS_LAYOUT: (b"sweeps.recorder.recorder", b"sweeps.bookkeeping")}
# What 0.1's snapshots name: the recorder, the searcher, the space and its parts.
PICKLED = [("sweeps.callback", "SweepRecorder"), ("sweeps.searcher", "BudgetAwareOptunaSearch"),
           ("sweeps.space", "SearchSpace"), ("sweeps.space", "Objective"), ("sweeps.space_schema", "FloatParam"),
           ("sweeps.trial", "run_trial"), ("sweeps.results", "ResultsTable"),
           # and what 0.1.x's wings named before the renames of 0.1.x
           ("sweeps.recorder.recorder", "SweepRecorder"), ("sweeps.recorder.front", "FrontRefresh"),
           ("sweeps.search.fifo", "LiveFIFOScheduler"), ("sweeps.search.samplers", "FrontierSampler")]


@pytest.mark.parametrize(("module", "name"), PICKLED)
def test_an_old_pickle_resolves_to_todays_object(module: str, name: str) -> None:
    old = pickle.loads(f"c{module}\n{name}\n.".encode())   # protocol 0: a global by module and name
    assert old.__name__ == name and old.__module__.startswith(("sweeps.space.", "sweeps.records.", "sweeps.search.",
                                                                 "sweeps.bookkeeping.", "sweeps.execution."))


def test_a_pickled_density_reader_reads_the_target_density() -> None:
    """MO-ASHA's reader pickled as execution.runner.TargetDensity (a space and nothing else) reads density."""
    from sweeps.search.schedulers import TargetValue

    reader = TargetValue(space=None)
    del reader.__dict__["metric"]   # as pickled before the field existed
    old = pickle.loads(pickle.dumps(reader, protocol=0).replace(b"TargetValue", b"TargetDensity")
                       .replace(b"sweeps.search.schedulers", b"sweeps.execution.runner"))
    assert isinstance(old, TargetValue) and old.metric == "density"


def test_every_old_module_is_the_new_module_itself() -> None:
    for old, new in compat.OLD_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old


def layout_tree(folder: Path, commit: str) -> Path:
    """An old layout's packages, from git history, as a folder to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", commit, "sweeps", "weightmom", "weightmom_sweeps",
                              "search_spaces"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone (shallow?): {archive.stderr.decode()[:200]}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("commit", LAYOUTS)
def test_a_sweep_snapshotted_by_an_old_layout_resumes_through_ray(commit: str, tmp_path: Path, mlflow_server) -> None:
    old_code = layout_tree(tmp_path / "old", commit)
    out, trials = tmp_path / "sweep", 4
    space = write_space(tmp_path, "flat", trials=trials, early_stopping=False, concurrency=1)
    command = [sys.executable, "-m", "weightmom_sweeps", "sweep", str(space), "--out", str(out),
               "--tracking-uri", mlflow_server.uri, "--verbose", "0"]
    env = {"PYTHONPATH": str(old_code), "WEIGHTMOM_CHECKPOINT_EVERY_S": "0"}
    # Ctrl-C after the first trial: Ray saves its snapshot (written by 0.1's classes) and the driver exits.
    run_until(command, tmp_path / "flat.log", lambda: rows_so_far(out) >= 1, signal.SIGINT, group=False,
              env={**os.environ, **env}, cwd=tmp_path)   # not the repository: `python -m` puts the cwd first
    assert 1 <= rows_so_far(out) < trials
    pickled = b"".join(p.read_bytes() for p in (out / "ray").glob("*/tuner.pkl"))   # Ray's, by the old names
    named, not_named = LAYOUTS[commit]
    assert named in pickled and not_named not in pickled
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "snapshot unreadable" not in resumed.stderr   # Ray's own restore, not recovery from the records
    assert f"{trials} of {trials} trials settled" in resumed.stdout
    rows = sweep_rows(out)
    assert len(rows) == trials and len({r["trial_id"] for r in rows}) == trials
    assert sorted(child_runs_by_trial(MlflowClient(mlflow_server.uri), out)) == sorted(r["trial_id"] for r in rows)
