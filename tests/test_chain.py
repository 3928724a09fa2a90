"""Chains (weightmom.chain): one run walks down a density grid, and each step's end is a model of its own."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_resume import stopped_and_resumed
from weightmom import TrainConfig, train
from weightmom.chain import ChainPlan, chain_lr
from weightmom.errors import UsageError
from weightmom.pruning.schedule import CubicSchedule

GRID = (0.3, 0.2, 0.1, 0.05)


def chain_config(method: str = "weightmom", unit: str = "epoch", **changes) -> TrainConfig:
    values = {"dataset": "digits", "model": "lenet300", "method": method, "density": GRID[0], "epochs": 4,
              "chain": GRID[1:], "chain_epochs": 2, "device": "cpu", "seed": 1,
              "pruner": {"prune_end": 3 if unit == "epoch" else 30, "unit": unit}}
    return TrainConfig(**(values | changes))


def test_the_plan_places_each_step_after_the_first_steps_epochs() -> None:
    plan = ChainPlan(GRID, base_epochs=4, epochs_per_step=2)
    assert plan.total_epochs == 10
    assert [plan.step_of(e) for e in range(1, 11)] == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert [e for e in range(1, 11) if plan.ends_step(e)] == [4, 6, 8, 10]
    assert [plan.step_end(k) for k in range(4)] == [4, 6, 8, 10]


def test_a_later_step_prunes_from_the_density_before_it() -> None:
    step = CubicSchedule(0.1, start=6, end=7, initial_density=0.2)
    assert step.density_at(6) == 0.2 and step.density_at(7) == 0.1 and step.density_at(6.5) == pytest.approx(0.1125)
    # Each further step restarts the lr at a fraction of the peak, cosine to zero within the step.
    lr = chain_lr(lambda s: 1.0, ChainPlan(GRID, 4, 2), steps_per_epoch=10, scale=0.3)
    assert [lr(s) for s in (0, 39)] == [1.0, 1.0]
    assert lr(40) == lr(60) == lr(80) == pytest.approx(0.3)
    assert lr(50) == pytest.approx(0.15) and lr(59) < 0.01


@pytest.mark.parametrize("method, unit", [("weightmom", "epoch"), ("gmp", "step")])
def test_a_chain_ends_each_step_at_its_grid_density(method: str, unit: str) -> None:
    config = chain_config(method, unit)
    seen: list[dict] = []
    result = train(config, report=seen.append, progress=False)
    assert [m["epoch"] for m in seen] == list(range(1, 11)) and result.metrics["epochs"] == 10
    ends = [m for m in seen if m["step_end"]]
    assert [m["epoch"] for m in ends] == [4, 6, 8, 10] and [m["chain_step"] for m in ends] == [0, 1, 2, 3]
    for end, density in zip(ends, GRID):
        assert end["density"] == pytest.approx(density, abs=2e-3)
        assert end["val_accuracy"] > 0.5   # every step is a model worth a front point, not a wreck
    # Each step prunes in its first epoch: the density is below the last step's by then, and only then.
    for m in seen[4:]:
        step = m["chain_step"]
        assert m["density"] == pytest.approx(GRID[step], abs=2e-3) or m["density"] < GRID[step - 1]
    assert all(math.isfinite(m["train_loss"]) for m in seen)


def test_a_chain_resumed_mid_step_ends_as_the_unbroken_one(tmp_path: Path) -> None:
    stopped_and_resumed(chain_config(), 5, tmp_path)   # inside step 1, after its pruning epoch: epochs 6 to 10 again


def test_without_a_chain_a_run_reports_what_it_did_before() -> None:
    seen: list[dict] = []
    train(chain_config(chain=()), report=seen.append, progress=False)
    assert len(seen) == 4 and not any("chain_step" in m or "step_end" in m for m in seen)


@pytest.mark.parametrize("changes, message", [
    ({"method": "snip", "pruner": {}}, "chain needs an iterative method (weightmom or gmp), not 'snip'"),
    ({"chain": (0.2, 0.25)}, "chain densities must go down from density 0.3: got [0.2, 0.25]"),
    ({"chain": (0.3,)}, "chain densities must go down from density 0.3: got [0.3]"),
    ({"chain_epochs": 0}, "chain_epochs must be a positive integer (got 0)"),
    ({"chain_lr": 1.5}, "chain_lr must be in (0, 1] (got 1.5)"),
])
def test_a_chain_that_cannot_run_is_refused_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        chain_config(**changes)
    assert str(err.value) == message


def test_the_command_line_walks_a_chain(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "chain.json"
    result = subprocess.run([sys.executable, "-m", "weightmom_sweeps", "train", "--dataset", "digits", "--model",
                             "lenet300", "--method", "gmp", "--density", "0.3", "--epochs", "3", "--quiet",
                             "--set", "chain=[0.2,0.1]", "--set", "chain_epochs=1", "--set", "pruner.prune_end=2",
                             "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["epochs"] == 5 and metrics["density"] == pytest.approx(0.1, abs=2e-3)
    assert metrics["config"]["chain"] == [0.2, 0.1]

