"""weightmom.contract: the one way a driver (the sweeps) talks about configs, and what it promises."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from weightmom import contract
from weightmom.contract import TrainConfig
from weightmom.errors import UsageError


def test_flat_keys_round_trip():
    flat = {"method": "weightmom", "density": 0.05, "pruner.window": 3, "pruner.allocation": "uniform",
            "model": "lenet300", "epochs": 4}
    config = contract.config_from_flat(flat)
    assert config.pruner == {"window": 3, "allocation": "uniform"} and config.density == 0.05
    again = contract.config_from_flat(contract.flat_config(config))
    assert again == config


def test_flat_config_records_the_density_aimed_for():
    assert contract.flat_config(TrainConfig(method="snip"))["density"] == 0.1
    assert contract.flat_config(TrainConfig())["density"] == 1.0


def test_a_pruner_typo_fails_when_the_config_is_built():
    with pytest.raises(UsageError, match=r"pruner\.windw.*did you mean pruner\.window"):
        TrainConfig(method="weightmom", pruner={"windw": 5})
    with pytest.raises(UsageError, match=r"pruner\.windw.*'dense' takes no pruner knobs"):
        contract.config_from_flat({"pruner.windw": 5})
    with pytest.raises(UsageError, match=r"pruner\.window must be >= 1"):
        contract.config_from_flat({"method": "weightmom", "pruner.window": 0})


def test_method_knobs_name_types_defaults_ranges_and_choices():
    knobs = contract.method_knobs("weightmom")
    window = knobs["window"]
    assert (window.type, window.default, window.range) == ("float", 5.0, "must be >= 1")
    assert knobs["beta"].type == "float | None" and knobs["prune_first"].type == "bool"
    assert knobs["allocation"].choices == ("importance", "uniform", "global", "erk")
    assert "density" not in knobs
    assert "window" not in contract.method_knobs("gmp"), "GMP fixes its window"
    assert contract.method_knobs("dense") == {}
    assert contract.methods_taking("window", ["weightmom", "gmp", "snip"]) == ["weightmom"]


@pytest.mark.parametrize("name, value, methods, expected", [
    ("lr", -1.0, ["weightmom"], "lr must be positive"),
    ("optimizer", "rmsprop", ["weightmom"], "unknown optimizer 'rmsprop'"),
    ("epochs", 2.5, ["weightmom"], "expected int"),
    ("pruner.threshold", 0.0, ["weightmom"], "pruner.threshold must be > 0"),
    ("density", 0.5, ["dense"], "method 'dense' keeps every weight"),
    ("method", "gmpp", ["weightmom"], "unknown method 'gmpp'"),
    ("model", "resnet9", ["weightmom"], "resnet9"),
])
def test_check_value_gives_the_rule_without_the_key(name, value, methods, expected):
    with pytest.raises(UsageError) as err:
        contract.check_value(name, value, methods)
    assert expected in str(err.value) and not str(err.value).startswith(f"{name}:")


def test_check_value_accepts_what_the_config_accepts():
    for name, value in [("lr", 0.1), ("pruner.window", 3), ("density", 0.05), ("optimizer", "adam")]:
        contract.check_value(name, value, ["weightmom"])


@pytest.mark.parametrize("name, expected", [
    ("lrr", "unknown key"),
    ("pruner", "nested keys exist only under"),
    ("optimizer.beta", "nested keys exist only under"),
    ("pruner.density", "top-level key 'density'"),
    ("pruner.windw", "unknown pruner knob"),
])
def test_check_name(name, expected):
    with pytest.raises(UsageError, match=expected):
        contract.check_name(name, ["weightmom"])


@pytest.mark.parametrize("method, pruner, epochs, expected", [
    ("weightmom", {}, 12, 9.0),                     # the library's default: 75% of training
    ("gmp", {"pruner.prune_end": 6, "lr": 0.1}, 12, 6.0),
    ("weightmom", {"pruner.unit": "step", "pruner.prune_end": 300}, 12, None),
    ("snip", {"pruner.prune_end": 3}, 12, 0.0),     # a knob the method does not take is ignored
    ("n2nskip", {}, 12, 0.0),
    ("gsm", {}, 12, 12.0),
])
def test_final_density_epoch(method, pruner, epochs, expected):
    assert contract.final_density_epoch(method, pruner, epochs) == expected


def test_a_schedule_past_the_budget_is_refused():
    with pytest.raises(UsageError, match=r"after the end of training \(12 epochs\)"):
        contract.final_density_epoch("weightmom", {"pruner.prune_end": 14}, 12)


def test_schedule_knobs_are_knobs_of_the_scheduled_methods():
    for key in contract.SCHEDULE_KNOBS:
        head, _, knob = key.partition(".")
        assert head == "pruner" and contract.methods_taking(knob, ["weightmom", "gmp"]) == ["weightmom", "gmp"]


def test_every_reported_metric_is_in_a_real_run():
    from weightmom import train

    seen = []
    train(TrainConfig(method="weightmom", density=0.2, epochs=1, device="cpu"), report=seen.append, progress=False)
    assert set(contract.reported_metrics()) <= set(seen[0])
    assert set(seen[0]) - set(contract.reported_metrics()) == {"epoch"}


def test_a_pruner_typo_on_the_command_line_fails_before_any_data_is_read(tmp_path):
    """One line naming the key, exit 2, and the dataset's loader is never called (it would leave a file)."""
    (tmp_path / "marked.py").write_text(
        "from pathlib import Path\n\ndef load():\n    Path('loaded').write_text('x')\n    raise SystemExit(3)\n")
    for args in (["--dataset", "digits"], ["--dataset", "marked:load", "--method", "weightmom"]):
        result = subprocess.run([sys.executable, "-m", "weightmom_sweeps", "train", *args, "--set", "pruner.windw=5"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "pruner.windw" in result.stderr, result.stderr
        assert not (tmp_path / "loaded").exists()
