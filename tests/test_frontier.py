"""The frontier sampler (sweeps.search.frontier, samplers.FrontierSampler) on hand-made fronts and real studies."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeps.search.frontier import LAST_RESULT, AccuracyView, FrontierSampler, dominated_area, frontier_density
from sweeps.search.recent_tpe import RecentTPESampler
from sweeps.search.samplers import make_sampler
from sweeps.search.searcher import BudgetAwareOptunaSearch
from sweeps.space.search_space import load_space
from tests.sweep_helpers import write_space

CHOICES = [0.01, 0.03, 0.1, 0.3]
DISTRIBUTIONS = {"density": CategoricalDistribution(CHOICES), "lr": FloatDistribution(1e-3, 1.0, log=True)}


def test_the_area_is_accuracy_against_log_density():
    assert dominated_area([(0.5, 0.1)]) == pytest.approx(0.5)    # one decade of density at 0.5
    assert dominated_area([(1.0, 0.01), (0.5, 0.1)]) == pytest.approx(2.0)   # the sparser point covers both
    assert dominated_area([(0.9, 0.1), (0.5, 0.01)]) == pytest.approx(0.9 + 0.5)


def test_the_density_goes_where_a_well_trained_network_adds_most():
    # 10% trains to 0.95 and 1% to 0.3 so far: a 1% network near 0.95 would add the most.
    assert frontier_density([(0.99, 0.3), (0.95, 0.1), (0.3, 0.01)], CHOICES) == 0.01
    # Each density already at its denser neighbour's accuracy: nothing is promised anywhere.
    assert frontier_density([(0.9, c) for c in CHOICES], CHOICES) is None


def _study(*trials) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for state, params, values, attrs in trials:
        study.add_trial(create_trial(state=state, params=params, distributions=DISTRIBUTIONS, values=values,
                                     user_attrs=attrs))
    return study


def test_tpe_reads_a_stopped_trial_where_it_got_to():
    study = _study((TrialState.COMPLETE, {"density": 0.1, "lr": 0.01}, [0.9, 0.1], {}),
                   (TrialState.PRUNED, {"density": 0.3, "lr": 0.5}, None, {LAST_RESULT: [1, 0.2]}))
    complete, pruned = AccuracyView(study).get_trials()
    assert complete.values == [0.9] and pruned.intermediate_values == {1: 0.2}
    assert not AccuracyView(study)._is_multi_objective()
    assert study.trials[0].values == [0.9, 0.1]   # the study itself is untouched


def test_the_sampler_draws_the_frontier_density_and_learns_the_rest():
    study = _study(*[(TrialState.COMPLETE, {"density": d, "lr": lr}, [a, d], {})
                     for d, lr, a in [(0.3, 0.01, 0.99), (0.1, 0.02, 0.95), (0.01, 0.5, 0.3), (0.3, 0.9, 0.2)]])
    sampler = FrontierSampler(explore=0.0, seed=0, n_startup_trials=2, multivariate=True, group=True)
    study.sampler = sampler
    trial = study.ask()
    assert trial.suggest_categorical("density", CHOICES) == 0.01
    assert 1e-3 <= trial.suggest_float("lr", 1e-3, 1.0, log=True) <= 1.0
    everywhere = FrontierSampler(explore=1.0, seed=0)   # always the least tried, 0.03 first
    study.sampler = everywhere
    drawn = [study.ask().suggest_categorical("density", CHOICES) for _ in range(7)]
    counts = [sum(t.params["density"] == c for t in study.trials) for c in CHOICES]
    assert drawn[0] == 0.03 and max(counts) - min(counts) <= 1, counts   # 12 trials: 3 at each density
    assert isinstance(make_sampler("frontier", 40, 0), FrontierSampler)
    assert math.isclose(make_sampler("frontier", 40, 0).explore, 0.75)


def test_without_a_density_param_it_draws_what_multi_objective_tpe_draws():
    """NAS-Bench-201 (benchmarks/proxy.py) has no density knob: the second objective, size, has no one param."""
    def draws(sampler: optuna.samplers.BaseSampler) -> list[tuple[str, float]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for _ in range(12):
            trial = study.ask()
            op, width = trial.suggest_categorical("op", ["conv", "pool", "skip"]), trial.suggest_float("w", 0.0, 1.0)
            size = width * {"conv": 1.0, "pool": 0.1, "skip": 0.0}[op]
            study.tell(trial, [width - (op == "skip"), size])
        return [(t.params["op"], t.params["w"]) for t in study.trials]

    tpe = dict(multivariate=True, group=True, constant_liar=True, seed=3, n_startup_trials=4)
    assert draws(FrontierSampler(**tpe)) == draws(RecentTPESampler(**tpe))
    assert draws(FrontierSampler(**tpe)) != draws(RecentTPESampler(**{**tpe, "seed": 4}))   # the check can fail


def test_the_searcher_keeps_where_a_stopped_trial_got_to(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, "stops", trials=4, start_points=[]))
    searcher = BudgetAwareOptunaSearch(space=space.define_by_run, metric=space.metrics, mode=space.modes,
                                       study_name="stops", storage=optuna.storages.InMemoryStorage(),
                                       sampler=optuna.samplers.RandomSampler(seed=0), budget=space.epochs,
                                       trials=space.trials)
    for trial_id, epoch in (("stopped", 3), ("finished", space.epochs)):
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, {"epoch": epoch, "val_accuracy": 0.7, "density": 0.1})
    stopped, finished = searcher._ot_study.get_trials()
    assert stopped.state == TrialState.PRUNED and stopped.user_attrs[LAST_RESULT] == [3, 0.7]
    assert finished.state == TrialState.COMPLETE and LAST_RESULT not in finished.user_attrs
