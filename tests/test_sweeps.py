"""Sweeps end to end: a real local Ray, a real MLflow server on 127.0.0.1, a real Optuna RDB study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps.analysis.pareto import above_chance
from sweeps.records.folder import FRONT, METHOD_PLOT, PLOTS, SPACE_COPY, SWEEP_STATE_FILE
from sweeps.records.results import read_table, sweep_rows
from sweeps.records.state import load_state
from sweeps.search.searcher import BudgetAwareOptunaSearch
from sweeps.space.search_space import load_space
from tests.sweep_helpers import child_runs, write_space
from weightmom_sweeps.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_budget_aware_search_reports_pruned_and_failed_truthfully(tmp_path: Path) -> None:
    """Trap (b) without Ray's loop: only a trial at the full budget becomes COMPLETE."""
    space = load_space(write_space(tmp_path, "unit", trials=3))
    searcher = BudgetAwareOptunaSearch(space=space.define_by_run, metric=space.metrics, mode=space.modes,
                                       storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"),
                                       study_name="unit", budget=space.epochs)
    for trial_id in ("stopped", "finished", "crashed"):
        assert searcher.suggest(trial_id) is not None
    searcher.on_trial_complete("stopped", {"epoch": 3, "val_accuracy": 0.99, "density": 0.01})
    searcher.on_trial_complete("finished", {"epoch": 6, "val_accuracy": 0.9, "density": 0.1})
    searcher.on_trial_complete("crashed", {"epoch": 2, "val_accuracy": 0.5, "density": 0.5}, error=True)
    study = optuna.load_study(study_name="unit", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED", "COMPLETE", "FAIL"]
    assert study.trials[1].values == [0.9, 0.1] and study.trials[0].values is None
    assert [t.number for t in study.best_trials] == [1]


def test_sweep_logs_to_a_real_mlflow_server_and_optuna_study(tmp_path: Path, mlflow_server, local_ray,
                                                              capsys) -> None:
    out = tmp_path / "sweep"
    # Whatever order the trials reach the rung in (the machine's load decides): the first good trial there is
    # dominated by no recorded point, so it completes (`undominated`); the hopeless trial at 0.3, started after
    # the good one at 0.1 has its rung point, is dominated by it, so it stops.
    space = write_space(tmp_path, "server-sweep", trials=6,
                        early_stopping={"enabled": True, "grace_period": 3, "reduction_factor": 2,
                                        "promotion": "undominated"},
                        start_points=[{"method": "weightmom", "density": 0.1, "lr": 0.05},
                                      {"method": "gmp", "density": 0.2, "lr": 0.0001},
                                      {"method": "gmp", "density": 0.2, "lr": 0.05},
                                      {"method": "weightmom", "density": 0.3, "lr": 0.0001}])
    assert main(["sweep", str(space), "--out", str(out), "--tracking-uri", mlflow_server.uri, "--verbose", "0"]) == 0
    assert "Pareto front" in capsys.readouterr().out

    rows = sweep_rows(out)
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    states = {r["trial_id"]: r["state"] for r in rows}
    assert set(states.values()) <= {"COMPLETE", "PRUNED"} and "PRUNED" in states.values()
    for row in rows:
        assert row["config.dataset"] == "digits" and row["config.method"] in ("weightmom", "gmp")
        assert (row["epochs"] == 6) == (row["state"] == "COMPLETE")
        assert row["mlflow_run_id"]
        if row["state"] == "COMPLETE":  # the pruned model to export; stopped trials never reach it
            assert Path(row["checkpoint_path"], "model.pt").is_file()

    # MLflow, read back through the client: a parent run with the plots, one child run per trial.
    client = MlflowClient(mlflow_server.uri)
    state = load_state(out)
    experiment = client.get_experiment(state.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "pareto/" in experiment.tags["mlflow.note.content"]
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_finished"] == 6
    artifacts = {a.path for a in client.list_artifacts(state.parent_run_id, "pareto")}
    assert {"pareto/pareto_front.png", "pareto/pareto_front.html", "pareto/front.txt"} <= artifacts
    children = child_runs(client, out)
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(states)
    for run in children:
        trial_id = run.data.tags["trial_id"]
        assert run.info.run_id == next(r["mlflow_run_id"] for r in rows if r["trial_id"] == trial_id)
        row = next(r for r in rows if r["trial_id"] == trial_id)
        # Stopped early is not a failure: FINISHED, with the state in a tag and in the run's name.
        assert run.data.tags["state"] == states[trial_id] and run.info.status == "FINISHED"
        assert run.info.run_name.endswith("(stopped early)") == (states[trial_id] == "PRUNED")
        assert run.data.params["model"] == "lenet300" and run.data.params["pruner.prune_end"] == "3"
        # One name per concept: the density asked for is a param, the density reached a metric.
        assert float(run.data.params["target_density"]) == row["config.target_density"]
        assert "density" not in run.data.params and "config.density" not in row
        assert not [name for name in run.data.metrics if name.startswith("final_")]
        assert run.data.metrics["density"] == row["density"]   # the last value is the trial's result
        assert run.data.metrics["val_accuracy"] == row["val_accuracy"]
        assert run.data.metrics["test_accuracy"] == row["test_accuracy"]
        history = client.get_metric_history(run.info.run_id, "test_accuracy")
        epochs = 6 if states[trial_id] == "COMPLETE" else 3
        assert [m.step for m in history] == list(range(1, epochs + 1))

    # The study agrees, and early-stopped trials are PRUNED there and absent from the front.
    study = optuna.load_study(study_name="server-sweep", storage=state.optuna_storage)
    assert sorted(t.state.name for t in study.trials) == sorted(
        {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED"}[s] for s in states.values())
    front = read_table(out / FRONT)
    assert front and all(states[r["trial_id"]] == "COMPLETE" for r in front)
    # Optuna's front, less any trial at chance (no choice: sweeps.analysis.pareto.above_chance); digits: 10 classes
    complete_values = sorted(tuple(t.values) for t in study.best_trials if above_chance(
        {"val_accuracy": t.values[0], "num_classes": 10}, ["val_accuracy"], ["max"]))
    assert complete_values == sorted((r["val_accuracy"], r["density"]) for r in front)  # chosen on val
    assert all(r["test_accuracy"] is not None for r in front)                             # test beside it


def test_best_picks_under_a_constraint_and_exports_the_pruned_model(tmp_path: Path, local_ray, capsys) -> None:
    out = tmp_path / "sweep"
    space = write_space(tmp_path, "best-sweep", trials=3, early_stopping=False)
    assert main(["sweep", str(space), "--out", str(out), "--verbose", "0"]) == 0
    rows = sweep_rows(out)
    cap = max(r["density"] for r in rows)
    best = tmp_path / "best.yaml"
    model = tmp_path / "best.pt"
    capsys.readouterr()
    assert main(["best", str(out), "--max-density", str(cap), "--out", str(best), "--export", str(model)]) == 0
    printed = capsys.readouterr().out
    chosen = max(rows, key=lambda r: (r["val_accuracy"], -r["density"]))  # chosen on val, never on test
    config = yaml.safe_load(best.read_text())
    assert config["lr"] == chosen["config.lr"] and config["method"] == chosen["config.method"]
    assert config["val_fraction"] == 0.1
    assert f"val_accuracy {chosen['val_accuracy']:.4f}" in printed and f"test_accuracy {chosen['test_accuracy']:.4f}"\
        in printed
    assert f"weightmom train --config {best} --set val_fraction=0" in printed

    # The exported model is that trial's pruned network; the config reproduces the trial exactly.
    evaluated, retrained = tmp_path / "eval.json", tmp_path / "retrain.json"
    assert main(["evaluate", str(model), "--json", str(evaluated)]) == 0
    assert json.loads(evaluated.read_text())["test_accuracy"] == chosen["test_accuracy"]
    assert main(["train", "--config", str(best), "--quiet", "--json", str(retrained)]) == 0
    again = json.loads(retrained.read_text())
    assert (again["val_accuracy"], again["test_accuracy"]) == (chosen["val_accuracy"], chosen["test_accuracy"])

    capsys.readouterr()
    assert main(["best", str(out), "--max-density", "0.0001", "--out", str(tmp_path / "none.yaml")]) == 1
    assert "no completed trial has density <= 0.0001" in capsys.readouterr().err
    assert not (tmp_path / "none.yaml").exists()
    assert main(["pareto", str(out)]) == 0
    assert "Pareto front" in capsys.readouterr().out


BAD_SPACES = {
    "unknown key": ({"trails": 3}, "trails"),
    "bad bounds": ({"params": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "params.lr"),
    "unknown method": ({"params": {"method": {"type": "categorical", "choices": ["magic"]}}}, "magic"),
    "unknown model": ({"fixed": {"model": "gpt5"}}, "gpt5"),
    "objective nobody reports": ({"objectives": [{"metric": "f1", "mode": "max"}]}, "objectives.0.metric"),
}


@pytest.mark.parametrize("case", BAD_SPACES)
def test_bad_spaces_fail_before_any_trial(case: str, tmp_path: Path, capsys) -> None:
    import ray

    overrides, key = BAD_SPACES[case]
    space = write_space(tmp_path, "bad", trials=2, **overrides)
    out = tmp_path / "out"
    assert main(["sweep", str(space), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml" in err and key in err
    assert not out.exists() and not ray.is_initialized()


def test_unreachable_tracking_server_fails_before_any_trial(tmp_path: Path, capsys) -> None:
    from tests.conftest import free_port

    out = tmp_path / "out"
    space = write_space(tmp_path, "unreachable", trials=2)
    code = main(["sweep", str(space), "--out", str(out), "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("weightmom: error: cannot reach the MLflow tracking server") and err.count("\n") == 1
    assert not out.exists()


def test_resume_without_a_sweep_and_rerun_over_one_are_refused(tmp_path: Path, capsys) -> None:
    space = write_space(tmp_path, "refused", trials=2)
    assert main(["sweep", str(space), "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no sweep to resume" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / SWEEP_STATE_FILE).write_text("{}")
    assert main(["sweep", str(space), "--out", str(tmp_path / "taken")]) == 2
    assert "already holds a sweep" in capsys.readouterr().err
    assert (tmp_path / "taken" / SWEEP_STATE_FILE).read_text() == "{}"


def test_smoke_test_runs_two_one_epoch_trials_of_the_shipped_default(tmp_path: Path, local_ray, capsys) -> None:
    out = tmp_path / "smoke"
    assert main(["sweep", "digits-quick", "--smoke-test", "--out", str(out), "--verbose", "0"]) == 0
    rows = sweep_rows(out)
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" and r["epochs"] == 1 for r in rows)
    assert yaml.safe_load((out / SPACE_COPY).read_text())["name"] == "digits-quick"


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_other_samplers_run_a_sweep_end_to_end(sampler: str, tmp_path: Path, local_ray) -> None:
    out = tmp_path / sampler
    space = write_space(tmp_path, f"{sampler}-sweep", trials=4, sampler=sampler, early_stopping=False,
                        fixed={"epochs": 3})
    assert main(["sweep", str(space), "--out", str(out), "--verbose", "0"]) == 0
    rows = sweep_rows(out)
    assert len(rows) == 4 and all(r["state"] == "COMPLETE" for r in rows)
    state = load_state(out)
    assert state.sampler == sampler
    study = optuna.load_study(study_name=f"{sampler}-sweep", storage=state.optuna_storage)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 4
    assert MlflowClient(state.tracking_uri).get_run(state.parent_run_id).data.params["sampler"] == sampler


def test_grid_sweep_runs_every_combination_once_and_tabulates(tmp_path: Path, local_ray, capsys) -> None:
    """method x density (only where it applies) x seed: dense once per seed, 10 trials in all."""
    out = tmp_path / "grid"
    space = tmp_path / "grid.yaml"
    space.write_text(yaml.safe_dump({
        "name": "grid-sweep", "sampler": "grid", "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
        "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 2, "device": "cpu", "pruner": {}},
        "params": {"method": {"type": "categorical", "choices": ["dense", "gmp", "weightmom"]},
                   "density": {"type": "categorical", "choices": [0.1, 0.05], "when": {"method": ["gmp", "weightmom"]}},
                   "seed": {"type": "categorical", "choices": [0, 1]}}}, sort_keys=False))
    assert main(["sweep", str(space), "--out", str(out), "--verbose", "0"]) == 0
    rows = sweep_rows(out)
    combos = sorted((r["config.method"], r.get("config.target_density"), r["config.seed"]) for r in rows)
    expected = sorted([("dense", None, s) for s in (0, 1)] +
                      [(m, d, s) for m in ("gmp", "weightmom") for d in (0.1, 0.05) for s in (0, 1)])
    assert combos == expected and all(r["state"] == "COMPLETE" for r in rows)
    assert all(abs(r["density"] - (r.get("config.target_density") or 1.0)) < 1e-3 for r in rows)

    # `weightmom table`: every method row, both density columns, n = 2 in each cell, files and MLflow artifacts.
    capsys.readouterr()
    assert main(["table", str(out)]) == 0
    printed = capsys.readouterr().out
    test_section = printed.split("## test_accuracy")[1].split("##")[0]
    assert "| test_accuracy | 1 | 0.1 | 0.05 |" in test_section
    for method in ("dense", "gmp", "weightmom"):
        line = next(line for line in test_section.splitlines() if line.startswith(f"| {method} |"))
        assert line.count("(n=2)") == (1 if method == "dense" else 2), line
    assert "| gmp | 0.1 |" in printed.split("## Paired differences")[1]   # weightmom - gmp, paired by seed
    assert {"table.md", "table.parquet"} <= {p.name for p in out.iterdir()}
    assert (out / PLOTS / METHOD_PLOT).stat().st_size > 10_000
    long = read_table(out / "table.parquet")
    assert {(r["method"], r["target_density"], r["n"]) for r in long if r["metric"] == "test_accuracy"} == {
        ("dense", 1.0, 2), *((m, d, 2) for m in ("gmp", "weightmom") for d in (0.1, 0.05))}
    state = load_state(out)
    artifacts = {a.path for a in MlflowClient(state.tracking_uri).list_artifacts(state.parent_run_id, "table")}
    assert "table/accuracy_vs_density.png" in artifacts


def test_table_refuses_a_folder_without_a_sweep_or_without_complete_trials(tmp_path: Path, capsys) -> None:
    assert main(["table", str(tmp_path / "nonexistent")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / SWEEP_STATE_FILE).write_text("{}")
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no COMPLETE trial" in err and err.count("\n") == 1
    assert not (tmp_path / "table.md").exists()
