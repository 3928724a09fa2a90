"""MO-ASHA's ranking on hand-made rungs: Pareto ranks, crowding tie-breaks, and the asynchronous promotion."""

import pickle
import random

from sweeps.basis.dominance import _ranks_any, crowding, pareto_ranks
from sweeps.search.moasha import MOASHAScheduler, Rungs, milestones, promote, promote_undominated, rung_order


def test_pareto_ranks_peel_fronts():
    # (accuracy, -density): (0.9, -0.3) and (0.7, -0.02) are both best; (0.8, -0.3) is beaten by the first.
    points = [(0.9, -0.3), (0.7, -0.02), (0.8, -0.3), (0.6, -0.3)]
    assert pareto_ranks(points) == [0, 0, 1, 2]


def test_equal_points_share_a_front():
    assert pareto_ranks([(1.0, 1.0), (1.0, 1.0), (0.0, 0.0)]) == [0, 0, 1]


def test_two_objective_fast_path_matches_the_general_sort():
    rng = random.Random(0)
    for _ in range(200):
        size = rng.randint(1, 12)
        points = [(rng.choice([0.1, 0.2, 0.5, 0.9]), rng.choice([-0.01, -0.03, -0.1])) for _ in range(size)]
        assert pareto_ranks(points) == _ranks_any(points)


def test_one_objective_ranks_by_value_as_asha_does():
    points = [(0.5,), (0.9,), (0.5,), (0.1,)]
    assert pareto_ranks(points) == _ranks_any(points) == [1, 0, 1, 2]


def test_crowding_puts_the_boundaries_first():
    points = [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0), (0.45, 0.56)]
    distance = crowding(points, [0, 1, 2, 3])
    assert distance[0] == distance[2] == float("inf")
    assert distance[1] > 0 and distance[3] > 0


def test_rung_order_ranks_then_spreads():
    points = [(0.5, 0.5), (0.0, 1.0), (0.2, 0.2), (1.0, 0.0)]
    order = rung_order(points)
    assert set(order[:3]) == {0, 1, 3} and order[3] == 2
    assert order[2] == 0   # the middle of the front has the finite crowding distance


def test_a_sparse_network_is_not_stopped_for_being_less_accurate():
    # ASHA on accuracy alone would stop the 2% network (0.80 is the worst accuracy of the rung).
    denser = [(0.95, -0.2), (0.94, -0.2), (0.93, -0.2), (0.92, -0.2), (0.91, -0.2)]
    assert promote(denser, (0.80, -0.02), eta=3)
    assert not promote(denser, (0.90, -0.2), eta=3)


def test_first_result_at_a_rung_continues_and_top_third_is_kept():
    assert promote([], (0.0, 0.0), eta=3)
    rung = [(0.9, -0.1), (0.8, -0.1)]
    assert not promote(rung, (0.7, -0.1), eta=3)
    assert promote(rung, (0.95, -0.1), eta=3)


def test_rungs_record_each_trial_once_per_milestone():
    assert milestones(3, 9, 3) == [3]
    assert milestones(1, 27, 3) == [1, 3, 9]
    rungs = Rungs(grace_period=1, max_t=9, eta=3)
    assert rungs.on_result("a", 1, (0.9, -0.1))
    assert not rungs.on_result("b", 1, (0.5, -0.1))
    assert rungs.on_result("a", 2, (0.95, -0.1))   # between milestones: nothing to decide
    assert rungs.on_result("a", 3, (0.96, -0.1))
    assert set(rungs.recorded[1]) == {"a", "b"} and set(rungs.recorded[3]) == {"a"}


def test_scheduler_round_trips_through_pickle():
    scheduler = MOASHAScheduler(["val_accuracy", "density"], ["max", "min"], max_t=9, grace_period=3)
    scheduler._rungs.on_result("a", 3, (0.9, -0.1))
    clone = pickle.loads(pickle.dumps(scheduler))
    assert clone._rungs.recorded == scheduler._rungs.recorded
    assert clone.point({"epoch": 3, "val_accuracy": 0.5, "density": 0.1}) == (0.5, -0.1)
    assert clone.point({"epoch": 3}) is None


def test_a_trial_is_ranked_on_its_target_density_before_its_schedule_reaches_it():
    scheduler = MOASHAScheduler(["val_accuracy", "density"], ["max", "min"], max_t=9, grace_period=1,
                                final_values={"density": lambda config: config["density"]})
    result = {"epoch": 1, "val_accuracy": 0.6, "density": 0.5}   # still pruning toward 2%
    assert scheduler.point(result, {"density": 0.02}) == (0.6, -0.02)
    assert scheduler.point(result) == (0.6, -0.5)   # no config: what it measured
    plain = pickle.loads(pickle.dumps(MOASHAScheduler(["val_accuracy", "density"], ["max", "min"])))
    del plain.__dict__["_final_values"]   # as pickled by a version before final_values
    assert plain.point(result, {"density": 0.02}) == (0.6, -0.5)


def test_a_sweep_with_density_among_its_objectives_ranks_each_trial_on_its_target_density():
    from sweeps import load_space
    from sweeps.execution.runner import make_scheduler
    space = load_space("digits-wide")
    scheduler = pickle.loads(pickle.dumps(make_scheduler(space)))   # it travels in Ray's snapshot
    config = {"method": "gmp", "density": 0.018, "lr": 0.05, "optimizer": "adam", "weight_decay": 1e-4,
              "pruner.allocation": "uniform", "pruner.prune_end": 3}
    result = {"epoch": 1, "val_accuracy": 0.7, "density": 0.4}   # epoch 1 of 3 on the way to 1.8%
    assert isinstance(scheduler, MOASHAScheduler) and scheduler.point(result, config) == (0.7, -0.018)


def test_the_undominated_rule_stops_only_what_enough_of_the_rung_dominates():
    rung = [(0.9, -0.1)] * 9 + [(0.5, -0.01)]
    assert not promote_undominated(rung, (0.8, -0.1), eta=3)   # 9 of 10 dominate it
    assert promote_undominated(rung, (0.95, -0.3), eta=3)      # denser but more accurate: nothing dominates it
    assert promote_undominated(rung, (0.4, -0.01), eta=3)      # one point dominates it: 1 <= floor(10 / 9)
    assert not promote_undominated([*rung, (0.45, -0.01)], (0.4, -0.01), eta=3)   # two do: 2 > floor(11 / 9)
    assert promote_undominated(rung, (0.85, -0.05), eta=3)   # on the rung's front, inside it
    assert not promote(rung, (0.85, -0.05), eta=3)           # the top-1/eta rule stops it: not a boundary point
    rungs = Rungs(grace_period=1, max_t=9, eta=3, promotion="undominated")
    assert all(rungs.on_result(str(i), 1, (0.5 + i / 100, -0.1)) for i in range(5))   # each better than before
    scheduler = pickle.loads(pickle.dumps(MOASHAScheduler(["val_accuracy", "density"], ["max", "min"],
                                                          promotion="undominated")))
    assert scheduler._rungs.promotion == "undominated"
    old = Rungs(grace_period=1, max_t=9, eta=3)
    del old.__dict__["promotion"]   # as pickled before the rule existed: the top-1/eta rule
    assert old.promotion == "top"
