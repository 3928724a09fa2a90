"""The replay simulator on a small hand-made table: exact self-lookup, budgets charged in epochs, monotone fronts."""

import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from sweeps import LAST_RESULT, load_space
from sweeps.search.frontier import AccuracyView

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import replay  # noqa: E402


def make_table(path: Path, trials: int = 30, space_name: str = "digits-wide") -> pd.DataFrame:
    """A table of `trials` random configs; for a chain space, the density walks its grid step by step."""
    space = load_space(space_name)
    plan = space.chain_plan
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rows = []
    for i in range(trials):
        trial = study.ask()
        space.define_by_run(trial)
        final = 0.1 + 0.85 * (i % 7) / 6
        curve = list(np.linspace(0.1, final, space.epochs))
        density = ([plan.densities[plan.step_of(e)] for e in range(1, space.epochs + 1)] if plan else
                   [float(trial.params["density"])] * space.epochs)
        rows.append({**{n: trial.params.get(n) for n in space.params}, "epochs": space.epochs,
                     "val_accuracy_by_epoch": curve, "density_by_epoch": density})
    frame = pd.DataFrame(rows)
    frame.to_parquet(path)
    return frame


def test_a_recorded_config_looks_up_itself(tmp_path):
    frame = make_table(tmp_path / "t.parquet")
    table = replay.load_table(str(tmp_path / "t.parquet"), load_space("digits-wide"))
    for i, row in frame.iterrows():
        config = {n: row[n] for n in table.space.params if row[n] is not None and row[n] == row[n]}
        assert replay.lookup(table, config) == i or np.allclose(table.accuracy[replay.lookup(table, config)],
                                                                table.accuracy[i])
    assert replay.fit_error(table, frame)["trials"] == len(frame)


def test_every_scheduler_spends_exactly_the_budget_and_the_front_only_grows(tmp_path):
    make_table(tmp_path / "t.parquet")
    table = replay.load_table(str(tmp_path / "t.parquet"), load_space("digits-wide"))
    for scheduler in ("fifo", "asha", "moasha"):
        curve = replay.simulate(table, replay.Arm("random", scheduler), seed=1, horizon=60)
        assert len(curve) == 60 and np.all(np.diff(curve) >= 0) and curve[-1] > 0


def test_the_forest_predicts_whole_curves_and_reports_its_cross_validated_error(tmp_path):
    frame = make_table(tmp_path / "t.parquet", trials=60)
    table = replay.load_table(str(tmp_path / "t.parquet"), load_space("digits-wide"))
    forest = replay.load_forest(str(tmp_path / "t.parquet"), table)
    config = {n: frame.iloc[0][n] for n in table.space.params if frame.iloc[0][n] == frame.iloc[0][n]}
    curve = forest.accuracy(replay.features(table, config))
    assert curve.shape == (table.epochs,) and np.all((0 <= curve) & (curve <= 1))
    error = replay.forest_fit_error(table, frame, folds=5)
    assert error["trials"] == 60 and 0 <= error["mae"] < error["mae_of_median_predictor"] + 0.2
    assert np.all(np.diff(replay.simulate(table, replay.Arm("random", "moasha", 1), seed=2, horizon=60,
                                          forest=forest)) >= 0)


def test_a_chain_makes_a_point_and_a_study_trial_at_every_step_end(tmp_path):
    make_table(tmp_path / "c.parquet", space_name="digits-wide-chain")
    table = replay.load_table(str(tmp_path / "c.parquet"), load_space("digits-wide-chain"))
    ends = replay.step_ends(table)
    assert ends == (9, 12, 15, 18, 21, 24) and table.epochs == 27
    study = optuna.create_study(directions=["maximize", "minimize"])
    job = replay._start(study, table, None)
    made = [replay._step(job, table, study, None, 2, ends) for _ in range(table.epochs)]
    assert [m[0] for m in made] == [None] * 26 + [True]
    points = [p for _, found in made for p in found]
    assert [d for _, d in points] == list(table.space.chain_plan.densities)   # one point per grid density
    assert len(study.trials) == 7 and all(t.params == job.trial.params for t in study.trials)
    # Fifo spends exactly the budget; chains fill the front faster than their trial count alone would.
    curve = replay.simulate(table, replay.Arm("random", "fifo"), seed=1, horizon=54)
    # The first chain completes at the 53rd epoch spent (2 workers); its steps were on the front before that.
    assert len(curve) == 54 and np.all(np.diff(curve) >= 0) and curve[51] > 0


def test_mo_asha_stops_chains_only_at_their_step_ends(tmp_path):
    make_table(tmp_path / "c.parquet", space_name="digits-wide-chain")
    table = replay.load_table(str(tmp_path / "c.parquet"), load_space("digits-wide-chain"))
    stopped_at = []
    original = replay._step

    def spy(job, *args):
        outcome, made = original(job, *args)
        if outcome is False:
            stopped_at.append(job.epoch)
        return outcome, made
    replay._step = spy
    try:
        replay.simulate(table, replay.Arm("random", "undominated", 1), seed=0, horizon=27 * 12)
    finally:
        replay._step = original
    assert stopped_at and set(stopped_at) <= set(replay.step_ends(table))


def test_the_knn_surrogate_is_a_second_family_with_its_own_error(tmp_path):
    frame = make_table(tmp_path / "t.parquet", trials=60)
    table = replay.load_table(str(tmp_path / "t.parquet"), load_space("digits-wide"))
    knn = replay.load_forest(str(tmp_path / "t.parquet"), table, "knn")
    config = {n: frame.iloc[3][n] for n in table.space.params if frame.iloc[3][n] == frame.iloc[3][n]}
    assert np.allclose(knn.accuracy(replay.features(table, config)), table.accuracy[3])   # a recorded config: itself
    error = replay.forest_fit_error(table, frame, folds=5, kind="knn")
    assert error["trials"] == 60 and error["mae"] >= 0


def test_the_summary_gives_shares_by_budget_and_the_expected_running_time():
    import search_quality

    budget = 4
    curves = {"random+fifo": np.array([[0, 0, 0, 1.0], [0, 0, 0, 0.0]]),   # the target: median 0.5 at the budget
              "fast": np.array([[1.0, 1, 1, 1], [0, 1.0, 1, 1]]), "never": np.zeros((2, 4))}
    arms = search_quality.replay_summary(curves, budget)["arms"]
    assert arms["fast"]["reached_by"] == {"0.25": 0.5, "0.5": 1.0, "0.75": 1.0, "1": 1.0}
    assert arms["fast"]["ert"] == (0.25 + 0.5) / 2
    assert arms["random+fifo"]["ert"] == (1.0 + 1.0) / 1   # the failure's whole budget counts
    assert arms["never"]["reached"] == 0 and arms["never"]["ert"] == float("inf")


def test_the_proxy_reads_nas_bench_201_and_its_front_only_grows():
    import proxy
    bench = proxy.load("cifar10", seed=0)
    cell = {name: choices[0] for name, choices in bench.search_space.items()}
    assert set(bench(cell)) == {"val_acc", "model_size"}
    curve = proxy.simulate("cifar10", "tpe", seed=0, trials=12, size_max=1.6)
    assert len(curve) == 12 and np.all(np.diff(curve) >= 0) and curve[-1] > 0


# The dominated-fraction rule is MO-ASHA's `undominated` promotion now: tests/test_moasha.py.


def test_the_stratified_tpe_draws_every_density_in_turn_and_learns_from_stopped_trials():
    import replay_bounds

    space = load_space("digits-wide")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=replay_bounds.frontier(0, explore=1.0))
    for i in range(21):
        trial = study.ask()
        space.define_by_run(trial)
        if i % 2:   # stopped at epoch 1, its rung value kept where the view reads it
            trial.set_user_attr(LAST_RESULT, [1, 0.1 + 0.8 * trial.params["lr"]])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [0.9, trial.params["density"]])
    densities = [t.params["density"] for t in study.trials]
    assert sorted(densities) == sorted(space.params["density"].choices * 3)   # 21 trials: each of 7 three times
    view = AccuracyView(study).get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert all(t.intermediate_values == {1: 0.1 + 0.8 * t.params["lr"]} for t in view)
    assert not study.trials[1].intermediate_values   # the study itself is left as it was


def test_a_real_run_resumes_only_from_its_own_pairs(tmp_path):
    import json

    import pytest
    import search_quality

    from weightmom.errors import UsageError
    path = tmp_path / "run.json"
    pairs = [{"seed": 0, search_quality.DEFAULT_ARM: {"hv": 0.9}, "random+fifo": {"hv": 0.8}}]
    path.write_text(json.dumps({"space": "digits-wide", "budget_epochs": 360, "default": search_quality.DEFAULT_ARM,
                                "pairs": pairs}))
    assert search_quality.resumed_pairs(path, "digits-wide", 360) == pairs
    with pytest.raises(UsageError, match="another run"):
        search_quality.resumed_pairs(path, "digits-wide", 180)
    with pytest.raises(UsageError, match="none at"):
        search_quality.resumed_pairs(tmp_path / "absent.json", "digits-wide", 360)
