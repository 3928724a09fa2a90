"""One table of objectives (weightmom.objectives) and one registry of samplers: every reader follows them, so
adding an objective is one entry, and nothing switches off silently."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sweeps.analysis.best import Limit, pick, size_metric
from sweeps.analysis.pareto import default_reference, front_rows, shown_metrics
from sweeps.basis.registry import PROMOTIONS, SAMPLERS
from sweeps.search.moasha import PROMOTIONS as PROMOTION_RULES
from sweeps.search.samplers import BUILDERS
from sweeps.space.search_space import load_space
from weightmom import contract, objectives
from weightmom.errors import UsageError
from weightmom.objectives import END, Metric


def test_every_registered_sampler_and_promotion_has_a_builder_and_the_schema_takes_exactly_those(tmp_path):
    assert BUILDERS.keys() == SAMPLERS.keys()
    assert PROMOTION_RULES.keys() == PROMOTIONS.keys()
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({"trials": 2, "sampler": "annealing", "params": {
        "lr": {"type": "float", "low": 0.01, "high": 0.1}}}))
    with pytest.raises(UsageError) as err:
        load_space(space)
    assert "sampler" in str(err.value) and all(name in str(err.value) for name in SAMPLERS)


def test_the_table_is_what_runs_report_and_each_entry_is_coherent():
    assert contract.reported_metrics(0.1) == tuple(objectives.METRICS)
    assert not any(name.startswith("val_") for name in contract.reported_metrics(0))
    for entry in objectives.METRICS.values():
        assert entry.mode in ("max", "min", None) and entry.low <= entry.high and entry.cadence in ("epoch", "end")
    assert contract.metric_target("density", contract.TrainConfig(method="gmp", density=0.07)) == 0.07
    assert contract.metric_target("val_accuracy", contract.TrainConfig()) is None


def _space(tmp_path: Path, objectives_: list[dict], early_stopping: bool) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "trials": 2, "objectives": objectives_,
        "early_stopping": {"enabled": early_stopping, "grace_period": 2},
        "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 6},
        "params": {"method": {"type": "categorical", "choices": ["gmp"]},
                   "density": {"type": "float", "low": 0.05, "high": 0.3}}}))
    return path


def test_an_objective_reported_only_at_the_end_is_refused_with_early_stopping_in_one_line(tmp_path, monkeypatch):
    """Today's MO-ASHA would find no value at its rungs and quietly continue every trial: refused instead."""
    monkeypatch.setitem(objectives.METRICS, "train_seconds", Metric("train_seconds", "min", 0.0, cadence=END))
    pair = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "train_seconds", "mode": "min"}]
    with pytest.raises(UsageError) as err:
        load_space(_space(tmp_path, pair, early_stopping=True))
    assert "objectives.1.metric: 'train_seconds'" in str(err.value) and "\n" not in str(err.value)
    assert load_space(_space(tmp_path, pair, early_stopping=False)).metrics == ["val_accuracy", "train_seconds"]


def test_a_mode_against_the_table_and_a_setting_as_objective_are_refused(tmp_path):
    with pytest.raises(UsageError, match="objectives.1.mode: 'density' is better smaller; expected mode min"):
        load_space(_space(tmp_path, [{"metric": "val_accuracy", "mode": "max"},
                                     {"metric": "density", "mode": "max"}], early_stopping=False))
    with pytest.raises(UsageError, match="'lr' is a setting"):
        load_space(_space(tmp_path, [{"metric": "lr", "mode": "min"}], early_stopping=False))


ROWS = [
    {"trial_id": "a", "state": "COMPLETE", "val_accuracy": 0.95, "test_accuracy": 0.94, "density": 0.3,
     "num_classes": 10},
    {"trial_id": "b", "state": "COMPLETE", "val_accuracy": 0.90, "test_accuracy": 0.88, "density": 0.05,
     "num_classes": 10},
    {"trial_id": "c", "state": "COMPLETE", "val_accuracy": 0.10, "test_accuracy": 0.10, "density": 0.01,
     "num_classes": 10},
]


def test_a_chance_level_trial_is_no_choice_on_the_front_but_stays_a_row():
    """c is undominated (the sparsest) yet at chance: it adds no hypervolume, so the front does not offer it.
    The demo's case: 0.103 on 10 classes, a constant predictor on a split whose classes are not quite even."""
    front = front_rows(ROWS, ["val_accuracy", "density"], ["max", "min"])
    assert [r["trial_id"] for r in front] == ["a", "b"]
    near_chance = [*ROWS[:2], {**ROWS[2], "val_accuracy": 0.103}]
    assert [r["trial_id"] for r in front_rows(near_chance, ["val_accuracy", "density"], ["max", "min"])] == ["a", "b"]
    just_above = [*ROWS[:2], {**ROWS[2], "val_accuracy": 0.15}]
    assert [r["trial_id"] for r in front_rows(just_above, ["val_accuracy", "density"], ["max", "min"])] == [
        "a", "b", "c"]
    assert shown_metrics(["val_accuracy", "density"]) == ["val_accuracy", "test_accuracy", "density"]


def test_limits_on_any_objective_and_the_size_a_floor_minimises(monkeypatch):
    rows = [{**r, "macs": m} for r, m in zip(ROWS, (4e6, 1e6, 5e5))]
    monkeypatch.setitem(objectives.METRICS, "macs", Metric("macs", "min", 0.0, log_scale=True))
    assert pick(rows, limits=[Limit("macs", "max", 2e6)])["trial_id"] == "b"
    assert size_metric([("val_accuracy", "max"), ("macs", "min")]) == "macs"
    assert pick(rows, limits=[Limit("val_accuracy", "min", 0.85)], size="macs")["trial_id"] == "b"
    assert default_reference(["val_accuracy", "macs"], ["max", "min"], [[0.9, 3e6], [0.8, 4e6]]) == [0.0, 4e6]
    assert default_reference(["val_accuracy", "density"], ["max", "min"]) == [0.0, 1.0]


def test_an_entry_changes_what_every_reader_sees(monkeypatch):
    """The plots' log axis and the hypervolume's reference come from the entry, nowhere else."""
    from sweeps.analysis.plots import _log_x

    assert _log_x("density", [0.01, 0.3]) and not _log_x("val_loss", [0.01, 0.3])
    monkeypatch.setitem(objectives.METRICS, "val_loss", replace(objectives.METRICS["val_loss"], log_scale=True,
                                                                 high=10.0))
    assert _log_x("val_loss", [0.01, 0.3])
    assert default_reference(["val_accuracy", "val_loss"], ["max", "min"]) == [0.0, 10.0]


@pytest.mark.slow
def test_an_objective_added_by_one_entry_runs_a_sweep_end_to_end(tmp_path, local_ray, monkeypatch, capsys):
    """Without its entry `params` is no objective (one line, exit 2); with it, the sweep, its front, its plots
    and `best --max-params` all work on it."""
    from sweeps.records.folder import FRONT, PLOTS
    from sweeps.records.results import sweep_rows
    from tests.sweep_helpers import write_space
    from weightmom_sweeps.cli import main

    entry = objectives.METRICS["params"]
    monkeypatch.setattr(objectives, "METRICS", {k: v for k, v in objectives.METRICS.items() if k != "params"})
    space = write_space(tmp_path, "params-sweep", trials=3, early_stopping=False,
                        objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"}],
                        fixed={"epochs": 3, "pruner": {"prune_end": 2, "granularity": "channel"}})
    out = tmp_path / "sweep"
    assert main(["sweep", str(space), "--out", str(out), "--verbose", "0"]) == 2
    assert "objectives.1.metric: no trial reports 'params'" in capsys.readouterr().err

    monkeypatch.setitem(objectives.METRICS, "params", entry)   # the one entry
    assert main(["sweep", str(space), "--out", str(out), "--verbose", "0"]) == 0
    rows = [r for r in sweep_rows(out) if r["state"] == "COMPLETE"]
    assert len(rows) == 3 and all(r["params"] > 0 for r in rows)
    front = pq_rows(out / FRONT)
    assert front and all("params" in r for r in front)
    assert (out / PLOTS / "pareto_front.png").stat().st_size > 0
    assert "params" in (out / PLOTS / "pareto_front.html").read_text()

    cap = sorted(r["params"] for r in rows)[1]
    chosen = max((r for r in rows if r["params"] <= cap), key=lambda r: (r["val_accuracy"], -r["params"]))
    capsys.readouterr()
    assert main(["best", str(out), "--max-params", str(cap), "--out", str(tmp_path / "best.yaml")]) == 0
    assert f"trial {chosen['trial_id']}" in capsys.readouterr().out
    assert main(["best", str(out), "--max-params", "1", "--out", str(tmp_path / "none.yaml")]) == 1
    assert "no completed trial has params <= 1" in capsys.readouterr().err


def pq_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
