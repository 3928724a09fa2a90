"""What a user sees in the MLflow UI, checked in a real browser: headless Chromium against a real
`mlflow server` holding a finished sweep. Skipped when no Chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from sweeps.records.mlflow_ui import runs_page
from sweeps.records.results import sweep_rows
from sweeps.records.state import load_state, load_sweep_space
from tests.sweep_helpers import write_space
from weightmom_sweeps.cli import main

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FRONT_RED = np.array([214, 39, 40])   # matplotlib's C3, the front's markers
MAX_HTML_BYTES = 1_500_000


def browse(url: str, *action: str, width: int = 1400) -> subprocess.CompletedProcess:
    """Load `url` in headless Chromium (a fresh profile) and dump its DOM or take a screenshot.

    The virtual time budget lets the single-page app fetch and render before the dump, without sleeping.
    The runs table renders only the columns in view, so a check on columns needs a wide window.
    """
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
               f"--window-size={width},900", "--virtual-time-budget=30000", *action, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=True)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, mlflow_server) -> Path:
    import ray

    folder = tmp_path_factory.mktemp("ui-sweep")
    space = write_space(folder, "ui-sweep", trials=3, early_stopping=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        assert main(["sweep", str(space), "--out", str(folder / "out"), "--tracking-uri", mlflow_server.uri,
                     "--verbose", "0"]) == 0
    finally:
        ray.shutdown()
    return folder / "out"


def test_the_printed_link_opens_the_runs_view_with_every_trial(finished_sweep: Path, mlflow_server, capsys) -> None:
    state = load_state(finished_sweep)
    page = runs_page(state.experiment_id)
    dom = browse(mlflow_server.uri + page, "--dump-dom", width=2800).stdout
    # The model-training runs view, not MLflow 3.17's default GenAI mode (an empty traces overview, or the
    # same table as "Training runs" under a GenAI sidebar of traces, judges and evaluation runs).
    assert re.search(r"<h2[^>]*>Runs</h2>", dom) and 'data-testid="sort-header-Run Name"' in dom
    assert "Evaluation runs" not in dom and "No data available" not in dom
    for row in sweep_rows(finished_sweep):   # the saved view lists the trials flat
        assert f"trial {row['trial_id']}" in dom
    primary = load_sweep_space(finished_sweep).metrics[0]
    assert f"Trials by {primary}" in dom   # the saved view is the one shown, with the key columns
    assert f">{primary}<" in dom and ">density<" in dom and ">target_density<" in dom
    experiment = MlflowClient(mlflow_server.uri).get_experiment(state.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_front_shows_inside_the_artifact_viewer(finished_sweep: Path, mlflow_server, tmp_path: Path) -> None:
    state = load_state(finished_sweep)
    client = MlflowClient(mlflow_server.uri)
    html_files = [a for a in client.list_artifacts(state.parent_run_id, "pareto") if a.path.endswith(".html")]
    assert {Path(a.path).name for a in html_files} >= {"pareto_front.html", "parallel_coordinates.html"}
    assert all(a.file_size < MAX_HTML_BYTES for a in html_files), [(a.path, a.file_size) for a in html_files]

    # The artifact as the server hands it out (as a download, so opened from disk): the browser's DOM
    # holds the plot, with a tooltip per trial.
    local = client.download_artifacts(state.parent_run_id, "pareto/pareto_front.html", str(tmp_path))
    dom = browse(Path(local).as_uri(), "--dump-dom").stdout
    assert "<svg" in dom and dom.count("<title>trial ") == len(sweep_rows(finished_sweep))

    # Inside MLflow's artifact viewer (a sandboxed iframe, not in the dumped DOM): look at the pixels.
    viewer = (f"{mlflow_server.uri}/#/experiments/{state.experiment_id}/runs/{state.parent_run_id}"
              "/artifacts/pareto/pareto_front.html?workflowType=machine_learning")
    assert 'class="mlflow-html-iframe"' in browse(viewer, "--dump-dom").stdout
    shot = tmp_path / "viewer.png"
    for _ in range(3):   # the iframe loads after the page; on a busy machine a first shot can come before it
        browse(viewer, f"--screenshot={shot}")
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        red = (np.abs(pixels - FRONT_RED).sum(axis=2) < 40).sum()
        if red > 20:
            break
    assert red > 20, f"the front's red markers are not on screen ({red} pixels); see {shot}"
