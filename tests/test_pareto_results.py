"""Pareto fronts, hypervolumes, the Parquet results table and the sweep plots."""

from __future__ import annotations

import html
import math
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest

from sweeps.analysis.pareto import (
    default_reference,
    format_table,
    front_rows,
    hypervolume,
    pareto_mask,
    sweep_hypervolume,
)
from sweeps.analysis.plots import front_html, front_png, log_ticks
from sweeps.analysis.study_plots import study_plots
from sweeps.records.folder import FRONT, FRONT_PNG, FRONT_TEXT, PLOTS, TRIALS
from sweeps.records.results import ResultsTable, read_table, write_rows
from weightmom.errors import UsageError

METRICS = ["test_accuracy", "density"]
MODES = ["max", "min"]


# ---------------------------------------------------------------- pareto_mask


def test_pareto_mask_mixed_modes():
    values = np.array(
        [
            [0.90, 0.10],  # front
            [0.95, 0.50],  # front: more accurate but denser
            [0.85, 0.20],  # dominated by row 0
            [0.80, 0.05],  # front: sparsest
            [0.95, 0.60],  # dominated by row 1 (same accuracy, denser)
        ]
    )
    assert pareto_mask(values, MODES).tolist() == [True, True, False, True, False]


def test_pareto_mask_modes_matter():
    values = np.array([[1.0, 1.0], [2.0, 2.0]])
    assert pareto_mask(values, ["max", "max"]).tolist() == [False, True]
    assert pareto_mask(values, ["min", "min"]).tolist() == [True, False]
    assert pareto_mask(values, ["max", "min"]).tolist() == [True, True]


def test_pareto_mask_keeps_all_duplicates_of_a_front_point():
    values = np.array([[0.9, 0.1], [0.9, 0.1], [0.8, 0.2], [0.8, 0.2]])
    assert pareto_mask(values, MODES).tolist() == [True, True, False, False]


def test_pareto_mask_nan_rows_are_never_on_the_front_and_dominate_nothing():
    values = np.array([[math.nan, 0.0], [0.5, 0.5], [1.0, math.nan]])
    assert pareto_mask(values, MODES).tolist() == [False, True, False]
    assert pareto_mask(np.array([[math.nan, math.nan]]), MODES).tolist() == [False]


def test_pareto_mask_single_point_and_empty():
    assert pareto_mask(np.array([[0.3, 0.7]]), MODES).tolist() == [True]
    assert pareto_mask(np.zeros((0, 2)), MODES).tolist() == []


def test_pareto_mask_dominated_chain():
    values = np.array([[i / 10, 1 - i / 10] for i in range(6)])  # each row beats the one before
    assert pareto_mask(values, MODES).tolist() == [False] * 5 + [True]


def test_pareto_mask_rejects_bad_modes():
    with pytest.raises(UsageError):
        pareto_mask(np.array([[1.0, 2.0]]), ["max", "smallest"])
    with pytest.raises(UsageError):
        pareto_mask(np.array([[1.0, 2.0]]), ["max"])


# ---------------------------------------------------------------- hypervolume


def _hv_2d_max_min(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Closed form for (max, min): sweep the front by increasing density, add each new rectangle."""
    ref_acc, ref_density = reference
    front = sorted(points, key=lambda p: (p[1], -p[0]))
    total, best_acc = 0.0, ref_acc
    for acc, density in front:
        if acc > best_acc:
            total += (acc - best_acc) * (ref_density - density)
            best_acc = acc
    return total


def test_hypervolume_matches_hand_computed_2d():
    points = [(0.90, 0.10), (0.95, 0.50), (0.80, 0.05), (0.85, 0.20)]
    # By hand, reference (0, 1): 0.80*0.95 + (0.90-0.80)*0.90 + (0.95-0.90)*0.50 = 0.76 + 0.09 + 0.025
    expected = 0.875
    assert hypervolume(np.array(points), MODES, [0.0, 1.0]) == pytest.approx(expected)
    assert _hv_2d_max_min(points, (0.0, 1.0)) == pytest.approx(expected)


def test_hypervolume_cross_check_random_2d():
    rng = np.random.default_rng(0)
    points = [(float(a), float(d)) for a, d in rng.uniform(0.0, 1.0, size=(40, 2))]
    assert hypervolume(np.array(points), MODES, [0.0, 1.0]) == pytest.approx(_hv_2d_max_min(points, (0.0, 1.0)))


def test_hypervolume_ignores_nan_and_points_beyond_the_reference():
    values = np.array([[0.5, 0.5], [math.nan, 0.1], [0.9, 1.5]])
    assert hypervolume(values, MODES, [0.0, 1.0]) == pytest.approx(0.25)
    assert hypervolume(np.zeros((0, 2)), MODES, [0.0, 1.0]) == 0.0


def test_hypervolume_3d_union_of_boxes():
    # Boxes to (4, 4, 4) of volume 6, 6 and 3; pairwise overlaps 4, 1, 1; all three overlap in 1: 10 in all.
    points = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 3.0, 1.0]])
    assert hypervolume(points, ["min"] * 3, [4.0, 4.0, 4.0]) == pytest.approx(10.0)
    assert hypervolume(np.vstack([points, points, [[3.5, 3.5, 3.5]]]), ["min"] * 3, [4.0] * 3) == pytest.approx(10.0)
    assert hypervolume(np.array([[0.5, 0.2, 0.4]]), ["max", "min", "min"], [0.0, 1.0, 1.0]) == pytest.approx(0.24)
    assert hypervolume(np.array([[2.0], [3.0]]), ["min"], [5.0]) == pytest.approx(3.0)


def test_hypervolume_equals_the_values_optuna_computed():
    """Values that optuna._hypervolume.compute_hypervolume (Optuna 5.0, what pareto.hypervolume used before)
    gave for these seeded points, to the last bit."""
    rng = np.random.default_rng(7)
    two, three = rng.uniform(0, 1, size=(30, 2)), rng.uniform(0, 1, size=(25, 3))
    ties = np.round(rng.uniform(0, 1, size=(40, 3)), 1)   # equal coordinates and duplicate points
    assert hypervolume(two, ["max", "min"], [0.0, 1.0]) == pytest.approx(0.848834907799509, rel=1e-12)
    assert hypervolume(three, ["max", "min", "min"], [0.0, 1.0, 1.0]) == pytest.approx(0.5541998766759587, rel=1e-12)
    assert hypervolume(ties, ["min", "min", "max"], [1.0, 1.0, 0.0]) == pytest.approx(0.834, rel=1e-12)


def test_default_reference_uses_bounds_then_worst_observed():
    values = np.array([[0.9, 0.1, 2.0, 0.3], [0.8, 0.2, 5.0, 0.7]])
    metrics = ["test_accuracy", "density", "compression_ratio", "test_loss"]
    modes = ["max", "min", "max", "min"]
    assert default_reference(metrics, modes, values) == [0.0, 1.0, 1.0, 0.7]
    with pytest.raises(UsageError):
        default_reference(["test_loss"], ["min"])


# ---------------------------------------------------------------- front_rows / format_table


def _row(trial_id: str, acc: float | None, density: float | None, state: str = "COMPLETE", **extra) -> dict:
    return {"trial_id": trial_id, "state": state, "test_accuracy": acc, "density": density, **extra}


def test_front_rows_only_complete_trials_compete():
    rows = [
        _row("a", 0.90, 0.10),
        _row("b", 0.95, 0.50),
        _row("c", 0.85, 0.20),
        _row("pruned", 0.99, 0.01, state="PRUNED"),  # would dominate everything
        _row("failed", 1.00, 0.00, state="FAILED"),
        _row("running", 1.00, 0.00, state="RUNNING"),
        _row("nan", math.nan, 0.01),
        _row("missing", None, 0.01),
    ]
    front = front_rows(rows, METRICS, MODES)
    assert [row["trial_id"] for row in front] == ["b", "a"]  # best accuracy first
    assert front_rows([], METRICS, MODES) == []


def test_format_table_aligns_and_formats():
    rows = [
        {"trial_id": "t1", "test_accuracy": 0.912345, "density": 0.05, "config.method": "weightmom", "epochs": 20},
        {"trial_id": "t22", "test_accuracy": 0.5, "density": None, "config.method": "magnitude", "epochs": 3},
    ]
    text = format_table(rows, ["trial_id", "test_accuracy", "density", "config.method", "epochs", "absent"])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["trial_id", "test_accuracy", "density", "config.method", "epochs", "absent"]
    assert lines[2].split() == ["t1", "0.9123", "0.05", "weightmom", "20", "-"]
    assert lines[3].split() == ["t22", "0.5", "-", "magnitude", "3", "-"]
    assert len({len(line) for line in lines[:2]}) == 1
    assert lines[2].index("0.9123") + len("0.9123") == lines[3].index("0.5") + len("0.5")  # right-aligned


# ---------------------------------------------------------------- results table


def test_upsert_replaces_by_trial_id_and_resumes(tmp_path):
    path = tmp_path / TRIALS
    table = ResultsTable(path)
    assert len(table) == 0 and not path.exists()
    table.upsert({"trial_id": "t1", "state": "RUNNING", "test_accuracy": None})
    assert pq.read_table(path).num_rows == 1
    table.upsert({"trial_id": "t2", "state": "COMPLETE", "test_accuracy": 0.5})
    assert pq.read_table(path).num_rows == 2
    table.upsert({"trial_id": "t1", "state": "COMPLETE", "test_accuracy": 0.9})
    assert pq.read_table(path).num_rows == 2
    assert len(table) == 2
    assert table.rows() == [
        {"trial_id": "t1", "state": "COMPLETE", "test_accuracy": 0.9},
        {"trial_id": "t2", "state": "COMPLETE", "test_accuracy": 0.5},
    ]

    resumed = ResultsTable(path)
    assert resumed.rows() == table.rows()
    resumed.upsert({"trial_id": "t2", "state": "COMPLETE", "test_accuracy": 0.6})
    resumed.upsert({"trial_id": "t3", "state": "FAILED", "test_accuracy": None, "error": "diverged"})
    assert [row["trial_id"] for row in read_table(path)] == ["t1", "t2", "t3"]
    assert read_table(path)[1]["test_accuracy"] == 0.6
    assert not [p for p in tmp_path.iterdir() if p.name != "trials.parquet"]  # no temp files left


def test_upsert_requires_trial_id(tmp_path):
    with pytest.raises(UsageError):
        ResultsTable(tmp_path / TRIALS).upsert({"state": "COMPLETE"})


def test_heterogeneous_rows_round_trip(tmp_path):
    path = tmp_path / TRIALS
    rows = [
        {"trial_id": "a", "config.method": "weightmom", "config.lr": 0.1, "epochs": 3, "mlflow_run_id": None},
        {"trial_id": "b", "config.method": "snip", "config.lr": 1, "config.pruner.window": 5, "density": 0.05},
        {"trial_id": "c", "config.choice": "auto", "test_loss": math.nan, "config.layers": [300, 100]},
        {"trial_id": "d", "config.choice": 0.5, "epochs": 7, "config.flag": True, "config.layers": None},
    ]
    table = ResultsTable(path)
    for row in rows:
        table.upsert(row)
        pq.read_table(path)  # always a valid file
    back = read_table(path)
    columns = list(back[0])
    assert columns == [
        "trial_id", "config.method", "config.lr", "epochs", "mlflow_run_id",
        "config.pruner.window", "density", "config.choice", "test_loss", "config.layers", "config.flag",
    ]  # fmt: skip
    for original, loaded in zip(rows, back):
        for key in columns:
            expected = original.get(key)
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(loaded[key])
            else:
                assert loaded[key] == expected, key
    assert isinstance(back[1]["config.lr"], float)  # the int 1 joins the float column
    assert isinstance(back[0]["epochs"], int)
    assert back[2]["config.choice"] == "auto" and back[3]["config.choice"] == 0.5  # mixed str/float kept
    assert back[3]["config.flag"] is True
    schema = pq.read_table(path).schema
    assert str(schema.field("config.lr").type) == "double"
    assert str(schema.field("mlflow_run_id").type) == "string"  # all-None column


def test_write_rows_numpy_scalars_and_empty(tmp_path):
    path = tmp_path / "sub" / TRIALS
    write_rows(path, [{"trial_id": "x", "test_accuracy": np.float32(0.5), "epochs": np.int64(4)}])
    assert read_table(path) == [{"trial_id": "x", "test_accuracy": 0.5, "epochs": 4}]
    write_rows(path, [])
    assert read_table(path) == []


def test_read_table_missing_or_unreadable(tmp_path):
    with pytest.raises(UsageError, match="no such results file"):
        read_table(tmp_path / "absent.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet\nat all\n")
    with pytest.raises(UsageError) as info:
        read_table(bad)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- plots


def _sweep_rows() -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        density = float(10 ** rng.uniform(-2, 0))
        acc = float(0.6 + 0.3 * density**0.2 + rng.normal(0, 0.02))
        state = "PRUNED" if i % 5 == 4 else "COMPLETE"
        rows.append(
            _row(
                f"trial_{i:04d}",
                acc,
                density,
                state=state,
                **{"config.method": "weightmom", "config.lr": 0.01 * (i + 1)},
            )
        )
    rows.append(_row("trial_fail", None, None, state="FAILED", error="boom"))
    return rows


def test_front_png_writes_a_png(tmp_path):
    rows = _sweep_rows()
    path = tmp_path / "front.png"
    front_png(rows, front_rows(rows, METRICS, MODES), METRICS, MODES, path, quality="hypervolume 0.5")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_front_png_without_complete_trials(tmp_path):
    path = tmp_path / "front.png"
    front_png([_row("p", 0.9, 0.1, state="PRUNED")], [], METRICS, MODES, path, quality="hypervolume 0")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_a_sweep_with_every_trial_at_chance_still_gets_its_picture_saying_so(tmp_path):
    rows = [_row(t, acc, d, num_classes=10) for t, acc, d in (("a", 0.11, 0.1), ("b", 0.09, 0.5))]
    assert front_rows(rows, METRICS, MODES) == []
    path = tmp_path / "front.html"
    front_html(rows, [], METRICS, MODES, path, quality="hypervolume 0")
    text = path.read_text()
    assert "0 of 2 complete trials (none above chance)" in text and "No complete trial above chance yet." in text


def test_front_html_is_small_self_contained_svg_with_a_tooltip_per_trial(tmp_path):
    rows = _sweep_rows()
    rows[0]["config.method"] = "magnitude_xyz"
    path = tmp_path / "front.html"
    front = front_rows(rows, METRICS, MODES)
    front_html(rows, front, METRICS, MODES, path, quality="log-density hypervolume 0.1234")
    text = path.read_text()
    # No script and no outside file: MLflow's artifact viewer (a sandboxed blob: iframe) shows it at once.
    assert "<script" not in text and "src=" not in text and path.stat().st_size < 200_000
    tooltips = re.findall(r'<g id="tip\d+"><title>([^<]*)</title>', text)
    assert len(tooltips) == 12  # every COMPLETE and PRUNED trial, none for the FAILED one
    assert any(t.startswith("trial trial_0000 (complete)") and "method: magnitude_xyz" in t for t in tooltips)
    assert "log-density hypervolume 0.1234" in text   # the caller's words, not computed again
    assert "<h3>The front</h3>" in text and all(f"<td>{r['trial_id']}</td>" in text for r in front)
    # Log-density ticks read as values, not as mantissas ("3 4 5 ... 0.1 2").
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", text)
    assert {"0.02", "0.05", "0.1", "0.2", "0.5"} <= set(labels)


def test_log_ticks_are_one_two_five_unless_the_range_is_narrow():
    assert log_ticks(0.015, 0.35) == [0.02, 0.05, 0.1, 0.2]
    assert log_ticks(0.035, 0.15) == [0.05, 0.1]
    assert log_ticks(0.041, 0.099) == [0.05, 0.06, 0.07, 0.08, 0.09]
    with pytest.raises(UsageError):
        log_ticks(0.0, 1.0)


def _study(n_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n_trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        method = trial.suggest_categorical("method", ["weightmom", "magnitude"])
        if method == "weightmom":
            trial.suggest_int("window", 1, 5)
        density = trial.suggest_float("density", 0.01, 1.0, log=True)
        study.tell(trial, [0.5 + 0.4 * density**0.3 - lr, density])
    return study


def test_study_plots_are_small_pages_that_name_the_objective_and_every_axis(tmp_path):
    paths = study_plots(_study(8), METRICS, tmp_path / PLOTS)
    assert [p.name for p in paths] == ["param_importances.html", "parallel_coordinates.html"]
    importance, parallel = (p.read_text() for p in paths)
    for path in paths:
        assert 1000 < path.stat().st_size < 200_000 and "<script" not in path.read_text()
    assert "Hyperparameter importance for test_accuracy (higher is better)" in importance
    labels = [html.unescape(t).replace("\n", "") for t in re.findall(r"<text[^>]*>([^<]*)</text>", parallel)]
    # Full labels, the requested density under its recorded name, and no "None" though `window` is conditional.
    assert {"test_accuracy", "density", "method", "lr", "window", "target_density"} <= set(labels)
    assert "None" not in labels and "None" not in parallel
    assert len(re.findall(r'<g id="tip\d+"><title>trial #', parallel)) == 8   # one hoverable line per trial


def test_study_plots_with_too_few_trials_skips(tmp_path):
    paths = study_plots(_study(1), METRICS, tmp_path)
    assert "param_importances.html" not in [p.name for p in paths]
    assert study_plots(_study(0), METRICS, tmp_path / "empty") == []


def test_log_density_hypervolume_rewards_the_sparse_end() -> None:
    from sweeps.analysis.pareto import accuracy_density_hypervolume, sweep_hypervolume

    assert accuracy_density_hypervolume([(1.0, 0.01)]) == pytest.approx(1.0)
    assert accuracy_density_hypervolume([(1.0, 1.0)]) == 0.0          # dense covers no log-density width
    assert accuracy_density_hypervolume([(0.1, 0.01)], chance=0.1) == 0.0   # chance accuracy covers nothing
    half = accuracy_density_hypervolume([(0.55, 0.1)], chance=0.1)    # half way on both axes
    assert half == pytest.approx(0.25)
    # Two points: union of their rectangles, not the sum; a dominated point adds nothing.
    two = accuracy_density_hypervolume([(0.55, 0.1), (1.0, 0.3162), (0.5, 0.2)], chance=0.1)
    assert two == pytest.approx(0.25 + 0.25 * 0.5, abs=1e-3)
    rows = [{"state": "COMPLETE", "val_accuracy": 0.55, "density": 0.1, "num_classes": 10},
            {"state": "PRUNED", "val_accuracy": 1.0, "density": 0.01, "num_classes": 10}]
    volume, text = sweep_hypervolume(rows, ["val_accuracy", "density"], ["max", "min"])
    assert volume == pytest.approx(0.25) and "log-density" in text


# ---------------------------------------------------------------- the recorder's pieces


class _Recorded:
    """A ResilientClient stand-in that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.metrics: list[tuple] = []
        self.artifacts: list[str] = []

    def log_batch(self, run_id, metrics=(), params=None, tags=None) -> None:
        self.metrics += [(run_id, *m) for m in metrics]

    def log_artifact(self, run_id, local_path, artifact_path=None) -> None:
        self.artifacts.append(Path(local_path).name)


def test_front_refresh_computes_the_hypervolume_once_and_plots_at_most_every_interval(tmp_path, monkeypatch):
    from sweeps.analysis import pareto
    from sweeps.bookkeeping import front

    calls = []
    real = pareto.sweep_hypervolume
    monkeypatch.setattr(pareto, "sweep_hypervolume", lambda *args: calls.append(1) or real(*args))
    space = SimpleNamespace(name="s", metrics=METRICS, modes=MODES, params={"lr": None})
    refresh = front.FrontRefresh(space, tmp_path, "parent", "sqlite:///:memory:")
    mlflow, rows = _Recorded(), _sweep_rows()
    refresh.refresh(lambda: rows, mlflow)
    assert len(calls) == 1   # the parent-run metric and both plot titles share one computation
    assert {name for _, name, *_ in mlflow.metrics} == {"hypervolume", "front_size", "trials_finished"}
    assert [v for _, name, v, *_ in mlflow.metrics if name == "hypervolume"] == [real(rows, METRICS, MODES)[0]]
    assert mlflow.artifacts == ["pareto_front.png", "pareto_front.html", "front.txt"]  # no study: its plots skipped
    assert [r["trial_id"] for r in read_table(tmp_path / FRONT)] == [
        r["trial_id"] for r in front_rows(rows, METRICS, MODES)]
    assert (tmp_path / PLOTS / FRONT_TEXT).read_text().startswith("trial_id")
    refresh.refresh(lambda: rows, mlflow)   # within PLOTS_EVERY_S: the numbers, not the plots
    assert len(mlflow.artifacts) == 3 and len(mlflow.metrics) == 6
    refresh.refresh(lambda: rows, mlflow, final=True)
    assert mlflow.artifacts[3:] == ["pareto_front.png", "pareto_front.html", "front.txt", "pareto.parquet"]
    assert len(calls) == 3


def test_front_refresh_row_by_row_gives_the_front_and_volume_of_all_rows(tmp_path):
    from sweeps.bookkeeping import front

    space = SimpleNamespace(name="s", metrics=METRICS, modes=MODES, params={"lr": None})
    refresh, mlflow, rows = front.FrontRefresh(space, tmp_path, "parent", "sqlite:///:memory:"), _Recorded(), []
    for row in _sweep_rows():
        rows.append(row)
        refresh.refresh(lambda: rows, mlflow, new=row)
    assert [r["trial_id"] for r in read_table(tmp_path / FRONT)] == [
        r["trial_id"] for r in front_rows(rows, METRICS, MODES)]
    volumes = [v for _, name, v, *_ in mlflow.metrics if name == "hypervolume"]
    assert volumes[-1] == sweep_hypervolume(rows, METRICS, MODES)[0]


def test_recorder_pickles_without_its_clients_caches_or_rows(tmp_path):
    from sweeps.bookkeeping.recorder import SweepRecorder

    recorder = SweepRecorder(SimpleNamespace(name="s", epochs=3), tmp_path, "sqlite:///x.db", "1", "parent", "s")
    recorder.runs._mlflow = lambda: None   # a client stand-in that does not pickle
    recorder.runs._runs, recorder.runs._logged_epoch = {"t1": "run1"}, {"t1": 2}
    recorder.runs._unlogged = {"t2": ({}, "COMPLETE", None)}
    recorder.results._table = ResultsTable(tmp_path / TRIALS)
    restored = pickle.loads(pickle.dumps(recorder))
    assert restored.runs._mlflow is None and restored.results._table is None
    assert restored.runs._runs == restored.runs._logged_epoch == restored.runs._unlogged == {}
    assert restored.runs.parent_run_id == "parent" and restored.results.path == tmp_path / TRIALS


def test_trial_row_flattens_the_config_under_recorded_names():
    from sweeps.bookkeeping.trial_rows import trial_row

    trial = SimpleNamespace(config={"density": 0.1, "pruner": {"window": 3}, "requeued": {"trial_id": "a"}},
                            last_result={"test_accuracy": 0.9, "epoch": 4, "node_id": "n1"}, checkpoint=None)
    row = trial_row("a", trial, "COMPLETE", "run1", None)
    assert row["config.target_density"] == 0.1 and row["config.pruner.window"] == 3
    assert "config.requeued.trial_id" not in row and "config.density" not in row
    assert (row["test_accuracy"], row["epochs"], row["node_id"], row["mlflow_run_id"]) == (0.9, 4, "n1", "run1")


def test_a_recorder_pickled_before_the_split_unpickles_into_its_pieces(tmp_path):
    """A sweep started by the one-object recorder resumes: Tuner.restore unpickles the callback from tuner.pkl."""
    from sweeps.bookkeeping.recorder import SweepRecorder

    old = object.__new__(SweepRecorder)
    old.__dict__.update(space=SimpleNamespace(name="s", epochs=3), out=tmp_path, tracking_uri="sqlite:///x.db",
                        experiment_id="1", parent_run_id="parent", optuna_storage="s", _mlflow=None, _table=None,
                        _runs={}, _logged_epoch={}, _buffers={}, _plotted_at=0.0, _unlogged={})
    restored = pickle.loads(pickle.dumps(old))
    assert restored.runs.parent_run_id == "parent" and restored.runs.experiment_id == "1"
    assert restored.results.path == tmp_path / TRIALS and restored.front.parent_run_id == "parent"


def test_a_one_objective_sweep_ends_without_a_front_plot(tmp_path):
    """A front plot needs two axes: with one objective the refresh writes the numbers and the table only."""
    from sweeps.bookkeeping import front

    space = SimpleNamespace(name="s", metrics=METRICS[:1], modes=MODES[:1], params={"lr": None})
    refresh, mlflow = front.FrontRefresh(space, tmp_path, "parent", "sqlite:///:memory:"), _Recorded()
    refresh.refresh(lambda: _sweep_rows(), mlflow, final=True)
    assert "pareto_front.png" not in mlflow.artifacts and "front.txt" in mlflow.artifacts
    assert (tmp_path / PLOTS / FRONT_TEXT).exists() and not (tmp_path / PLOTS / FRONT_PNG).exists()
