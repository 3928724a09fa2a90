"""Chains in a sweep: every step of a trial is a point in the books, on the front, in the study, and shippable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from sweeps.execution.reconcile import reconcile
from sweeps.records.folder import STEPS
from sweeps.records.results import ResultsTable, read_table, sweep_points, sweep_rows, write_rows
from sweeps.records.state import load_state, load_sweep_space
from sweeps.search.schedulers import make_scheduler
from sweeps.search.searcher import CHAIN_OF, CHAIN_STEP, RAY_TRIAL_ID
from sweeps.space.search_space import load_space
from tests import warm_driver
from tests.sweep_helpers import write_space
from tests.test_books import stop, wait_for
from tests.test_torn_resume import ENV, sweep_command
from weightmom.errors import UsageError
from weightmom_sweeps.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GRID = [0.3, 0.1, 0.03]


def chain_space(folder: Path, name: str, trials: int = 3, **changes) -> Path:
    """Digits, 3 epochs to 0.3, then one epoch per further density: 5 epochs, 3 front points per trial."""
    space = {"trials": trials, "early_stopping": {"enabled": False},
             "fixed": {"epochs": 3, "pruner": {"prune_end": 2}},
             "params": {"method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
                        "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
             "start_points": [], "chain": {"densities": GRID, "epochs_per_step": 1}}
    path = write_space(folder, name, **(space | changes))
    raw = yaml.safe_load(path.read_text())
    raw["params"].pop("density")   # the chain walks its own densities
    path.write_text(yaml.safe_dump(raw))
    return path


def study_of(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=load_state(out).optuna_storage)


def test_a_chain_space_sets_every_trial_and_is_judged_at_its_step_ends(tmp_path: Path) -> None:
    space = load_space(chain_space(tmp_path, "chained", early_stopping={"enabled": True, "grace_period": 1}))
    assert space.epochs == 5 and space.first_step_epochs == 3
    config = space.train_config({**space.fixed, "method": "gmp", "lr": 0.05})
    assert config.density == 0.3 and config.chain == (0.1, 0.03) and config.total_epochs == 5
    assert make_scheduler(space)._rungs.recorded.keys() == {3, 4}   # MO-ASHA at the steps but the last


@pytest.mark.parametrize("change, message", [
    ({"params": {"density": {"type": "float", "low": 0.01, "high": 0.3}}},
     "params.density: a chain walks its own densities (chain.densities); remove density"),
    ({"fixed": {"epochs": 3, "chain_lr": 0.5}}, "fixed.chain_lr: a chain walks its own densities"),
    ({"params": {"method": {"type": "categorical", "choices": ["snip", "gmp"]}}},
     "chain: method snip cannot chain; a chain needs weightmom or gmp"),
    ({"chain": {"densities": [0.1, 0.3]}}, "chain.densities: expected densities in (0, 1] going down"),
    ({"chain": {"densities": [0.3, 0.1], "lr_scale": 2.0}}, "chain.lr_scale: input should be less than or equal"),
])
def test_a_chain_space_that_cannot_run_is_refused_in_one_line(tmp_path: Path, change: dict, message: str) -> None:
    path = chain_space(tmp_path, "bad")
    raw = yaml.safe_load(path.read_text())
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if key in ("params", "fixed") else value
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_space(path)


def test_chain_keys_outside_a_chain_section_are_refused(tmp_path: Path) -> None:
    path = write_space(tmp_path, "loose", trials=2, fixed={"chain": [0.02]})
    with pytest.raises(UsageError, match=r"fixed.chain: set a chain in `chain:`; remove chain"):
        load_space(path)


@pytest.mark.slow
def test_every_step_of_a_chain_is_a_point_in_the_books_the_study_and_mlflow(tmp_path: Path, mlflow_server,
                                                                            local_ray) -> None:
    out, trials = tmp_path / "sweep", 3
    space = chain_space(tmp_path, "chain-sweep", trials=trials, concurrency=2)
    assert main(["sweep", str(space), "--out", str(out), "--tracking-uri", mlflow_server.uri, "--verbose", "0"]) == 0

    rows = sweep_rows(out)   # one row per trial: the budget counts trials, not steps
    assert len(rows) == trials and all(r["state"] == "COMPLETE" and r["epochs"] == 5 for r in rows)
    steps = read_table(out / STEPS)
    assert sorted(s["trial_id"] for s in steps) == sorted(f"{r['trial_id']}-s{k}" for r in rows for k in (0, 1))
    for point in [*rows, *steps]:
        step = point["chain_step"]
        assert point["density"] == pytest.approx(GRID[step], abs=2e-3)
        assert point["config.chain"] == GRID[1:step + 1]   # the config that trains exactly to this point
        assert Path(point["checkpoint_path"], "model.pt").is_file()   # every step's model is kept
        assert point["chain_of"] == point["trial_id"].split("-s")[0]
    front = read_table(out / "pareto.parquet")
    assert {p["trial_id"] for p in front} <= {p["trial_id"] for p in sweep_points(out)}
    for point in front:   # every front point is a real model: it exports, at the accuracy the books recorded
        exported = tmp_path / f"export-{point['trial_id']}"
        assert main(["export", str(Path(point["checkpoint_path"], "model.pt")), "--out", str(exported),
                     "--latency-runs", "3"]) == 0
        assert json.loads((exported / "report.json").read_text())["test_accuracy"] == point["test_accuracy"]

    # Optuna learns from every step: one trial of its own per step, apart from the trials of the budget.
    study = study_of(out, "chain-sweep")
    derived = [t for t in study.trials if CHAIN_OF in t.user_attrs]
    assert len([t for t in study.trials if RAY_TRIAL_ID in t.user_attrs]) == trials and len(derived) == 2 * trials
    assert Counter((t.user_attrs[CHAIN_OF], t.user_attrs[CHAIN_STEP]) for t in derived) == Counter(
        {(r["trial_id"], k): 1 for r in rows for k in (0, 1)})
    for t in derived:
        step = next(s for s in steps if s["trial_id"] == f"{t.user_attrs[CHAIN_OF]}-s{t.user_attrs[CHAIN_STEP]}")
        assert t.values == [step["val_accuracy"], step["density"]]

    # MLflow: the chain's run says which step each epoch is in.
    history = MlflowClient(mlflow_server.uri).get_metric_history(rows[0]["mlflow_run_id"], "chain_step")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 0, 0, 1, 2]

    # `best` picks among the steps too, and its config trains exactly to the chosen point.
    config, model = tmp_path / "best.yaml", tmp_path / "best.pt"
    assert main(["best", str(out), "--max-density", "0.15", "--out", str(config), "--export", str(model)]) == 0
    eligible = [p for p in sweep_points(out) if p["density"] <= 0.15]
    chosen = max(eligible, key=lambda p: p["val_accuracy"])
    again = subprocess.run([sys.executable, "-m", "weightmom_sweeps", "train", "--config", str(config), "--quiet",
                            "--json", str(tmp_path / "again.json")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["val_accuracy"] == chosen["val_accuracy"]

    # A step the study holds with no row (a driver killed between the searcher's tell and the recorder's row)
    # gets its row back when the books reconcile, from the trial's Ray record: metrics and checkpoint alike.
    lost = steps[0]
    write_rows(out / STEPS, [s for s in steps if s["trial_id"] != lost["trial_id"]])
    books = reconcile(load_sweep_space(out), load_state(out), out)
    assert books.steps == [lost["trial_id"]] and "1 chain steps' rows rebuilt" in books.message()
    back = next(s for s in read_table(out / STEPS) if s["trial_id"] == lost["trial_id"])
    assert {k: back.get(k) for k in lost if k != "finished_at"} == {k: v for k, v in lost.items() if k != "finished_at"}
    assert reconcile(load_sweep_space(out), load_state(out), out).steps == []   # once


@pytest.mark.slow
def test_a_driver_killed_mid_chain_resumes_with_each_step_counted_once(tmp_path: Path, mlflow_server) -> None:
    out, trials = tmp_path / "sweep", 3
    space = chain_space(tmp_path, "chain-kill", trials=trials, concurrency=1,
                        chain={"densities": [0.3, 0.17, 0.1, 0.055, 0.03], "epochs_per_step": 1})
    command = sweep_command(space, out, mlflow_server.uri)
    driver = warm_driver.WarmDriver(command[3:], tmp_path / "first.out", tmp_path / "first.err", ENV)
    try:
        wait_for(lambda: len(ResultsTable(out / STEPS)) >= 2, driver, "two chain steps")
    finally:
        stop(driver)
    assert len(sweep_rows(out, required=False)) < trials
    resumed = warm_driver.run_cli([*command, "--resume"], tmp_path, "resumed", ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    rows = sweep_rows(out)
    assert len(rows) == trials and all(r["state"] == "COMPLETE" for r in rows)
    steps = read_table(out / STEPS)
    assert sorted(s["trial_id"] for s in steps) == sorted(f"{r['trial_id']}-s{k}" for r in rows for k in range(4))
    derived = [t for t in study_of(out, "chain-kill").trials if CHAIN_OF in t.user_attrs]
    told = Counter((t.user_attrs[CHAIN_OF], t.user_attrs[CHAIN_STEP]) for t in derived)
    assert told == Counter({(r["trial_id"], k): 1 for r in rows for k in range(4)})
    client = MlflowClient(mlflow_server.uri)
    for row in rows:   # MLflow: every epoch once, so every step's end once
        epochs = [m.step for m in client.get_metric_history(row["mlflow_run_id"], "chain_step")]
        assert sorted(epochs) == list(range(1, 8)), row["trial_id"]
