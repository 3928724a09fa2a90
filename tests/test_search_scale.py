"""What keeps the driver's cost per trial flat: TPE over a window of recent trials, and a searcher snapshot
that holds ids, not the study. No Ray cluster: the searcher is driven by hand, as Ray drives it."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle

from sweeps.search.recent_tpe import RecentTPESampler, RecentTrials
from sweeps.search.samplers import make_sampler
from sweeps.search.searcher import RAY_TRIAL_ID, BudgetAwareOptunaSearch
from sweeps.space.search_space import load_space
from tests.sweep_helpers import write_space

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def finished_study(n: int, running: int = 0) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for index in range(n + running):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        if index < n:
            study.tell(trial, [x, 1 - x])
    return study


def test_the_window_is_the_newest_trials_of_the_states_asked_for() -> None:
    study = finished_study(12, running=2)
    recent = RecentTrials(study, window=5)
    assert [t.number for t in recent._get_trials(deepcopy=False, states=None, use_cache=False)] == [9, 10, 11, 12, 13]
    assert [t.number for t in recent.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))] == [
        7, 8, 9, 10, 11]
    assert recent.directions == study.directions   # everything else is the study's own
    assert len(RecentTrials(study, window=50).get_trials()) == 14   # under the window: the study as it is


def test_a_sweep_under_the_window_is_sampled_exactly_as_by_plain_tpe() -> None:
    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for _ in range(30):
            trial = study.ask()
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_categorical("y", ["a", "b"])
            study.tell(trial, [x * (y == "a"), x])
        return [t.params["x"] for t in study.trials]

    plain = optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=3, n_startup_trials=5)
    windowed = RecentTPESampler(multivariate=True, group=True, constant_liar=True, seed=3, n_startup_trials=5,
                                window=100)
    assert draws(windowed) == draws(plain)
    assert draws(RecentTPESampler(multivariate=True, group=True, constant_liar=True, seed=3, n_startup_trials=5,
                                  window=8)) != draws(plain)   # the window is what the sampler reads
    assert isinstance(make_sampler("tpe", 40, 0), RecentTPESampler)


def test_the_searcher_snapshot_holds_ids_and_stays_small_as_trials_finish(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, "slim", trials=400, start_points=[]))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = BudgetAwareOptunaSearch(
        space=space.define_by_run, metric=space.metrics, mode=space.modes, study_name="slim",
        storage=optuna.storages.RDBStorage(storage), sampler=optuna.samplers.RandomSampler(seed=0),
        budget=space.epochs, trials=space.trials)
    as_created = ray.cloudpickle.dumps(searcher)   # tuner.pkl

    def snapshot_size(first: int, finished: int) -> int:
        for index in range(first, first + finished):
            searcher.suggest(f"t{index}")
            searcher.on_trial_complete(f"t{index}", {"epoch": space.epochs, "val_accuracy": 0.9, "density": 0.1})
        searcher.save(str(tmp_path / "searcher.pkl"))
        return os.path.getsize(tmp_path / "searcher.pkl")

    small = snapshot_size(0, 10)
    live = searcher.suggest("live")   # running at the snapshot
    large = snapshot_size(10, 200)
    assert large < small + 200 * 100, (small, large)   # a few bytes per finished trial (the completed ids), no more

    restored = ray.cloudpickle.loads(as_created)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert list(restored._ot_trials) == ["live"]
    trial = restored._ot_trials["live"]
    assert trial.params == {k: v for k, v in live.items() if k in trial.params}
    restored.on_trial_complete("live", {"epoch": space.epochs, "val_accuracy": 0.8, "density": 0.2})
    study = optuna.load_study(study_name="slim", storage=storage)
    told = next(t for t in study.trials if t.user_attrs[RAY_TRIAL_ID] == "live")
    assert told.state.name == "COMPLETE" and told.values == [0.8, 0.2]


class Controller:
    """The two calls a scheduler makes of Ray's controller, over hand-made trials (an object with a status)."""

    def __init__(self, statuses: list[str]) -> None:
        self.trials = [type("T", (), {"status": s, "__repr__": lambda t, i=i: f"t{i}"})() for i, s in
                       enumerate(statuses)]

    def get_trials(self) -> list:
        return self.trials

    def get_live_trials(self) -> set:
        return {t for t in self.trials if t.status != "TERMINATED"}


@pytest.mark.parametrize("statuses, chosen", [
    (["TERMINATED", "RUNNING", "PENDING"], 2),
    (["TERMINATED", "PENDING", "PAUSED", "PENDING"], 1),   # the first PENDING, in the order trials were added
    (["PAUSED", "RUNNING", "PAUSED"], 0),
    (["TERMINATED", "RUNNING"], None),
])
def test_the_live_fifo_chooses_as_ray_s_fifo_does(statuses: list[str], chosen: int | None) -> None:
    from ray.tune.schedulers import FIFOScheduler

    from sweeps.search.live_trials import LiveFIFOScheduler
    from sweeps.search.moasha import MOASHAScheduler

    controller = Controller(statuses)
    expected = None if chosen is None else controller.trials[chosen]
    assert FIFOScheduler().choose_trial_to_run(controller) is expected   # Ray's own, scanning every trial
    assert LiveFIFOScheduler().choose_trial_to_run(controller) is expected
    assert MOASHAScheduler(["val_accuracy", "density"], ["max", "min"]).choose_trial_to_run(controller) is expected
