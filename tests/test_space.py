"""Search spaces: every shipped file loads, compiles to a define-by-run function a real Optuna study
can drive, and every kind of mistake is one UsageError line naming the file and the key."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from sweeps.space.search_space import SPACES_DIR, SearchSpace, find_space, load_space, shipped_spaces
from weightmom import contract
from weightmom.contract import TrainConfig, flat_config
from weightmom.errors import UsageError

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHIPPED = ["baselines", "cifar10-mini-fast", "cifar10-mini-table", "cifar10-mini-wide", "cifar10-resnet56",
           "cifar10-vgg16", "cifar100-resnet50", "digits-quick", "digits-wide", "digits-wide-chain"]

# A small valid space; each bad-space test breaks one thing in a copy of it.
BASE = {
    "trials": 4,
    "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 10},
    "params": {
        "method": {"type": "categorical", "choices": ["weightmom", "gmp"]},
        "density": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "lr": {"type": "float", "low": 0.01, "high": 0.2, "log": True},
        "pruner.window": {"type": "int", "low": 1, "high": 10, "when": {"method": "weightmom"}},
    },
}


def write_space(tmp_path: Path, data: dict | str, name: str = "bad-space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def sample(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """Drive define_by_run from a real study: (sampled params, returned constants) per ask."""
    directions = ["maximize" if mode == "max" else "minimize" for mode in space.modes]
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    for point in space.start_points:
        study.enqueue_trial(point)
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space.define_by_run(trial)
        out.append((dict(trial.params), constants))
        study.tell(trial, [0.5] * len(directions))
    return out


# --------------------------------------------------------------------------- shipped spaces

def test_shipped_spaces_are_listed():
    assert shipped_spaces() == SHIPPED
    assert (SPACES_DIR / "__init__.py").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_loads(name):
    space = load_space(name)
    assert space.name == name and space.description and "\n" not in space.description
    assert space.path == SPACES_DIR / f"{name}.yaml"
    assert all(metric in contract.reported_metrics() for metric in space.metrics)
    assert space.trials >= len(space.start_points) or name == "digits-quick"
    header = space.path.read_text().splitlines()[0]
    assert header.startswith(f"# {name}:"), "each file opens with a comment saying what it is for"
    # Every start point is a complete, valid trial once the constants are added.
    for point in space.start_points:
        assert isinstance(space.train_config({**space.fixed, **point}), TrainConfig)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_samples_valid_configs(name):
    space = load_space(name)
    for params, constants in sample(space, 12):
        trial = {**params, **constants}
        recorded = flat_config(space.train_config(trial))
        assert {key: recorded[key] for key in trial} == trial, "the built config carries every sampled value"


def test_digits_quick_is_the_cheap_default():
    space = load_space("digits-quick")
    assert (space.trials, space.concurrency, space.epochs) == (8, 2, 12)
    assert (space.resources.cpu, space.resources.gpu) == (1, 0)
    assert space.fixed["dataset"] == "digits" and space.fixed["model"] == "lenet300"
    assert space.early_stopping.enabled and space.early_stopping.grace_period == 6  # once pruning is done
    assert space.metrics == ["val_accuracy", "density"] and space.modes == ["max", "min"]


def test_define_by_run_honours_conditions_and_returns_fixed():
    space = load_space("digits-quick")
    seen_methods, seen_allocations = set(), set()
    for params, constants in sample(space, 30):
        assert constants == space.fixed
        config = space.train_config({**params, **constants})
        assert config.pruner.keys() == {k.removeprefix("pruner.") for k in params if k.startswith("pruner.")}
        weightmom = params["method"] == "weightmom"
        assert ("pruner.window" in params) == weightmom
        assert ("pruner.threshold" in params) == weightmom
        importance = params["pruner.allocation"] == "importance"
        assert ("pruner.importance_scaling" in params) == importance
        assert 0.02 <= config.density <= 0.3 and 0.01 <= config.lr <= 0.2 and 3 <= config.pruner["prune_end"] <= 6
        seen_methods.add(params["method"])
        seen_allocations.add(importance)
    assert seen_methods == {"weightmom", "gmp"} and seen_allocations == {True, False}


class RecordingTrial:
    """Like Ray's suggest captor: only suggest_* exists, so define_by_run can do nothing else."""

    def __init__(self):
        self.calls: list[str] = []

    def suggest_float(self, name, low, high, *, log=False, step=None):
        self.calls.append(name)
        return low

    def suggest_int(self, name, low, high, *, log=False, step=1):
        self.calls.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.calls.append(name)
        return choices[0]


def test_define_by_run_only_suggests():
    space = load_space("digits-quick")
    trial = RecordingTrial()
    assert space.define_by_run(trial) == space.fixed
    assert trial.calls == ["method", "density", "lr", "pruner.window", "pruner.threshold", "pruner.allocation",
                           "pruner.importance_scaling", "pruner.prune_end"]


def test_conditional_constant(tmp_path):
    data = copy.deepcopy(BASE)
    data["params"]["pruner.threshold"] = {"type": "fixed", "value": 2.0, "when": {"method": "weightmom"}}
    space = load_space(write_space(tmp_path, data, "const.yaml"))
    for params, constants in sample(space, 20):
        assert "pruner.threshold" not in params
        assert constants.get("pruner.threshold") == (2.0 if params["method"] == "weightmom" else None)
        space.train_config({**params, **constants})


def test_start_points_are_enqueued_first():
    space = load_space("digits-quick")
    assert len(space.start_points) == 2
    for (params, _), point in zip(sample(space, 2), space.start_points):
        assert params == point


def test_train_config_nests_pruner_keys_and_rejects_foreign_ones():
    space = load_space("digits-quick")
    config = space.train_config({**space.fixed, "method": "weightmom", "density": 0.1, "pruner.window": 3})
    assert config.pruner == {"window": 3} and config.epochs == 12
    with pytest.raises(UsageError, match="window"):  # gmp fixes window: a conditional param prevents this
        space.train_config({**space.fixed, "method": "gmp", "density": 0.1, "pruner.window": 3})
    with pytest.raises(UsageError, match="lrr"):
        space.train_config({**space.fixed, "lrr": 0.1})


def test_baselines_is_the_full_table():
    space = load_space("baselines")
    cells = {(p["method"], p.get("density"), p["seed"]) for p in space.start_points}
    methods = ("weightmom", "gmp", "snip", "gsm", "random", "n2nskip")
    assert cells == {("dense", None, s) for s in range(3)} | {
        (m, d, s) for m in methods for d in (0.1, 0.05, 0.02) for s in range(3)}
    assert space.sampler == "grid" and space.trials == 57 and not space.early_stopping.enabled
    assert space.fixed["model"] == "vgg16" and space.resources.gpu == 1


@pytest.mark.parametrize("name", ["cifar10-vgg16", "cifar10-resnet56", "cifar100-resnet50"])
def test_gpu_spaces_include_the_paper_densities(name):
    space = load_space(name)
    assert {0.1, 0.05, 0.02} <= {p["density"] for p in space.start_points}
    assert space.resources.gpu > 0 and space.epochs in (160, 200)
    assert {"pruner.window", "pruner.threshold", "pruner.prune_end", "weight_decay"} <= space.params.keys()


def test_smoke_test_shrinks_and_stays_valid():
    space = load_space("cifar10-vgg16")
    smoke = space.smoke_test()
    assert smoke.trials == 2 and smoke.epochs == 1 and not smoke.early_stopping.enabled
    assert "pruner.prune_end" not in smoke.params  # schedules in epochs of the real budget would not fit
    assert space.trials == 64 and space.epochs == 160  # the original is untouched
    for params, constants in sample(smoke, 6):
        assert space.train_config({**params, **constants}).epochs == 1


def test_with_overrides_and_pickling():
    space = load_space("digits-quick")
    changed = space.with_overrides(trials=3, concurrency=1)
    assert (changed.trials, changed.concurrency) == (3, 1) and space.trials == 8
    with pytest.raises(UsageError, match="trials"):
        space.with_overrides(trials=0)
    assert pickle.loads(pickle.dumps(space)) == space  # Ray ships the space to its workers


def test_find_space_by_name_and_path(tmp_path):
    assert find_space("digits-quick") == SPACES_DIR / "digits-quick.yaml"
    assert find_space("digits-quick.yaml") == SPACES_DIR / "digits-quick.yaml"
    path = write_space(tmp_path, BASE, "mine.yaml")
    assert find_space(str(path)) == path
    space = load_space(path)
    assert space.name == "mine" and space.path == path
    with pytest.raises(UsageError) as err:
        find_space("no-such-space")
    assert "no-such-space" in str(err.value) and all(name in str(err.value) for name in SHIPPED)


def test_scientific_notation_reads_as_a_number(tmp_path):
    text = yaml.safe_dump(BASE) + "start_points: [{lr: 1e-2}]\n"
    space = load_space(write_space(tmp_path, text.replace("0.01", "1e-2"), "sci.yaml"))
    assert space.params["lr"].low == 0.01 and space.start_points[0]["lr"] == 0.01


def test_early_stopping_auto_follows_the_budget(tmp_path):
    short = copy.deepcopy(BASE)
    short["fixed"]["epochs"] = 5
    assert not load_space(write_space(tmp_path, short, "short.yaml")).early_stopping.enabled
    assert load_space(write_space(tmp_path, BASE, "long.yaml")).early_stopping.enabled


# --------------------------------------------------------------------------- bad spaces

def _set(path: str, value):
    """An edit that sets a slash-separated key path (keys may contain dots) in a copy of BASE."""
    def edit(data: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


def _both(*edits):
    def edit(data: dict) -> None:
        for one in edits:
            one(data)
    return edit


def _remove(path: str):
    def edit(data: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[key]
        del data[last]
    return edit


BAD = {
    "unknown top-level key": (_set("trails", 3), "trails"),
    "unknown key in a param": (_set("params/lr/scale", "log"), "params.lr.scale"),
    "missing bound": (_remove("params/lr/low"), "params.lr.low"),
    "unknown param type": (_set("params/lr/type", "floaty"), "params.lr"),
    "low >= high": (_set("params/lr", {"type": "float", "low": 0.2, "high": 0.1}), "params.lr.low"),
    "log with low <= 0": (_set("params/density/low", 0.0), "params.density.low"),
    "int param with float bounds": (_set("params/pruner.window/low", 1.5), "params.pruner.window.low"),
    "log with a step": (_set("params/lr/step", 0.01), "params.lr.step"),
    "empty choices": (_set("params/optimizer", {"type": "categorical", "choices": []}), "params.optimizer.choices"),
    "unknown method in choices": (_set("params/method/choices", ["weightmom", "gmpp"]), "params.method.choices.1"),
    "unknown model": (_set("fixed/model", "resnet9"), "fixed.model"),
    "unknown lr_schedule choice": (_set("params/lr_schedule", {"type": "categorical", "choices": ["cosine", "cos"]}),
                                   "params.lr_schedule.choices.1"),
    "unknown pruner knob": (_set("params/pruner.windw", {"type": "int", "low": 1, "high": 3}),
                            "params.pruner.windw"),
    "pruner.density": (_set("params/pruner.density", {"type": "float", "low": 0.1, "high": 0.2}),
                       "params.pruner.density"),
    "knob a method does not take": (_remove("params/pruner.window/when"), "params.pruner.window"),
    "fixed knob a method does not take": (_set("fixed/pruner", {"threshold": 2.0}), "fixed.pruner.threshold"),
    "objective nobody reports": (_set("objectives", [{"metric": "val_accuracy", "mode": "max"},
                                                     {"metric": "flops", "mode": "min"}]), "objectives.1.metric"),
    "objective on the test set": (_set("objectives", [{"metric": "test_accuracy", "mode": "max"}]),
                                  "objectives.0.metric"),
    "val objective without a val split": (_set("fixed/val_fraction", 0), "objectives.0.metric"),
    "bad objective mode": (_set("objectives", [{"metric": "density", "mode": "lowest"}]), "objectives.0.mode"),
    "when references a later param": (_set("params/pruner.window/when", {"pruner.threshold": 1.0}),
                                      "params.pruner.window.when.pruner.threshold"),
    "when references an unknown param": (_set("params/pruner.window/when", {"methd": "weightmom"}),
                                         "params.pruner.window.when.methd"),
    "when value not a choice": (_set("params/pruner.window/when", {"method": "snip"}),
                                "params.pruner.window.when.method"),
    "start point out of bounds": (_set("start_points", [{"method": "weightmom", "density": 0.5}]),
                                  "start_points.0.density"),
    "start point sets a fixed key": (_set("start_points", [{"epochs": 3}]), "start_points.0.epochs"),
    "start point breaks a condition": (_set("start_points", [{"method": "gmp", "pruner.window": 3}]),
                                       "start_points.0.pruner.window"),
    "epochs 0 in fixed": (_set("fixed/epochs", 0), "fixed.epochs"),
    "unknown fixed key": (_set("fixed/lrr", 0.1), "fixed.lrr"),
    "param value the config rejects": (_set("params/lr/low", -1.0), "params.lr.low"),
    "searched and fixed": (_set("fixed/lr", 0.1), "params.lr"),
    "schedule past the budget": (_set("params/pruner.prune_end", {"type": "int", "low": 5, "high": 14}),
                                 "params.pruner.prune_end"),
    "ASHA before pruning ends": (_both(_set("early_stopping", {"enabled": True, "grace_period": 2}),
                                       _set("objectives", [{"metric": "val_accuracy", "mode": "max"}])),
                                 "early_stopping.grace_period"),
    "trials 0": (_set("trials", 0), "trials"),
    "cpu 0": (_set("resources", {"cpu": 0}), "resources.cpu"),
    "early stopping on a searched budget": (
        lambda d: (d["fixed"].pop("epochs"), d["params"].update(epochs={"type": "int", "low": 5, "high": 10}),
                   d.update(early_stopping=True)), "early_stopping.enabled"),
    "bad early stopping value": (_set("early_stopping", "yes"), "early_stopping.enabled"),
    "unknown promotion rule": (_set("early_stopping", {"promotion": "best"}), "early_stopping.promotion"),
    "frontier without a density grid": (_set("sampler", "frontier"), "sampler"),
    "frontier with one objective": (_both(_both(_set("sampler", "frontier"), _set("objectives", [
        {"metric": "val_accuracy", "mode": "max"}])), _set("params/density", {"type": "categorical",
                                                                              "choices": [0.02, 0.1]})), "sampler"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_space_names_file_and_key(tmp_path, case):
    edit, key = BAD[case]
    data = copy.deepcopy(BASE)
    edit(data)
    path = write_space(tmp_path, data)
    with pytest.raises(UsageError) as err:
        load_space(path)
    message = str(err.value)
    assert "bad-space.yaml" in message and f"{key}:" in message and "\n" not in message, message


def test_bad_base_is_valid(tmp_path):
    assert load_space(write_space(tmp_path, BASE)).params.keys() == BASE["params"].keys()


@pytest.mark.parametrize("text, expected", [
    ("trials: [1, 2\nparams: {}\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_unreadable_file(tmp_path, text, expected):
    with pytest.raises(UsageError) as err:
        load_space(write_space(tmp_path, text))
    assert "bad-space.yaml" in str(err.value) and expected in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError) as err:
        load_space(tmp_path / "gone.yaml")
    assert "gone.yaml" in str(err.value) and "\n" not in str(err.value)


def test_space_module_needs_neither_ray_nor_mlflow():
    code = "import sys, sweeps.space.search_space; sys.exit(bool({'ray', 'mlflow'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


# --------------------------------------------------------------------------- honest selection and samplers

def test_a_test_set_objective_is_refused_with_the_reason_and_the_fix(tmp_path):
    data = copy.deepcopy(BASE)
    data["objectives"] = [{"metric": "test_accuracy", "mode": "max"}, {"metric": "density", "mode": "min"}]
    with pytest.raises(UsageError) as err:
        load_space(write_space(tmp_path, data))
    assert "would choose on the test set" in str(err.value) and "use 'val_accuracy'" in str(err.value)


GRID = {"name": "grid", "sampler": "grid", "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 2},
        "params": {"method": {"type": "categorical", "choices": ["gmp", "weightmom"]},
                   "density": {"type": "categorical", "choices": [0.1, 0.05]},
                   "seed": {"type": "categorical", "choices": [0, 1]}}}


def test_grid_enumerates_every_combination_once_and_defaults_trials_to_its_size(tmp_path):
    space = load_space(write_space(tmp_path, GRID, "grid.yaml"))
    combos = {(p["method"], p["density"], p["seed"]) for p in space.start_points}
    assert space.sampler == "grid" and space.trials == 8 and len(space.start_points) == 8
    assert combos == {(m, d, s) for m in ("gmp", "weightmom") for d in (0.1, 0.05) for s in (0, 1)}


def test_grid_runs_a_param_that_does_not_apply_once(tmp_path):
    data = copy.deepcopy(GRID)
    data["params"]["method"]["choices"] = ["dense", "gmp", "weightmom"]
    data["params"]["density"]["when"] = {"method": ["gmp", "weightmom"]}
    space = load_space(write_space(tmp_path, data, "grid.yaml"))
    dense = [p for p in space.start_points if p["method"] == "dense"]
    assert space.trials == 10 and sorted(p["seed"] for p in dense) == [0, 1]
    assert all("density" not in p for p in dense)


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["params"].update(lr={"type": "float", "low": 0.01, "high": 0.1}), "params.lr: sampler grid"),
    (lambda d: d.update(trials=9), "the grid has 8 combinations"),
    (lambda d: d.update(start_points=[{"method": "gmp"}]), "start_points"),
])
def test_grid_refuses_what_it_cannot_enumerate(tmp_path, edit, expected):
    data = copy.deepcopy(GRID)
    edit(data)
    with pytest.raises(UsageError, match=expected):
        load_space(write_space(tmp_path, data, "grid.yaml"))


def test_trials_is_required_except_for_a_grid(tmp_path):
    data = copy.deepcopy(GRID)
    data["sampler"] = "random"
    with pytest.raises(UsageError, match="trials: missing required key"):
        load_space(write_space(tmp_path, data, "grid.yaml"))


@pytest.mark.parametrize("content, expected", [
    (b"name: x\ntrials: 2\n\xff\xfe\x00binary\x80\n", "bad-space.yaml: not a text file"),
    # density before method (as yaml.safe_dump sorts keys): the empty choices are named, not density's `when`.
    (yaml.safe_dump({**BASE, "params": {"density": BASE["params"]["density"],
                                        "method": {"type": "categorical", "choices": []}}}).encode(),
     "bad-space.yaml: params.method.choices: expected a non-empty list"),
])
def test_binary_file_and_empty_method_choices_give_one_line_and_exit_2(tmp_path, capsys, content, expected):
    from weightmom_sweeps.cli import main

    path = tmp_path / "bad-space.yaml"
    path.write_bytes(content)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightmom: error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_a_mapping_valued_model_argument_is_one_argument(tmp_path, monkeypatch):
    """fixed.model_args.block: {depth: 2} sets the factory's argument `block`, not an argument `block.depth`."""
    (tmp_path / "blockmod.py").write_text(
        "from torch import nn\n\ndef build(input_shape, num_classes, block=None):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n")
    monkeypatch.chdir(tmp_path)
    data = copy.deepcopy(BASE)
    data["fixed"].update(model="blockmod:build", model_args={"block": {"depth": 2}})
    space = load_space(write_space(tmp_path, data, "block.yaml"))
    assert space.fixed["model_args.block.depth"] == 2
    assert space.train_config({**space.fixed, "method": "gmp"}).model_args == {"block": {"depth": 2}}


def _early_stopping_space(tmp_path, methods, early_stopping, fixed=None, name="es.yaml"):
    data = copy.deepcopy(BASE)
    data["params"]["method"]["choices"] = methods
    data["params"]["pruner.window"]["when"] = {"method": [m for m in methods if m == "weightmom"] or methods[:1]}
    if "weightmom" not in methods:
        del data["params"]["pruner.window"]
    data["fixed"].update(epochs=20, **(fixed or {}))
    data["early_stopping"] = early_stopping
    return write_space(tmp_path, data, name)


@pytest.mark.parametrize("methods, fixed, expected", [
    (["weightmom", "gmp"], {}, (True, 15)),                       # the schedule's default end: 75% of 20 epochs
    (["weightmom"], {"pruner": {"prune_end": 8}}, (True, 8)),
    (["snip", "random", "n2nskip"], {}, (True, 1)),               # final density from the start
    (["weightmom", "gsm"], {}, (False, 20)),                      # GSM masks at the last epoch: nothing to compare
    (["weightmom"], {"pruner": {"unit": "step", "prune_end": 50}}, (False, 1)),   # the epoch is not known here
])
def test_auto_early_stopping_compares_trials_once_they_have_their_final_density(tmp_path, methods, fixed,
                                                                                 expected):
    space = load_space(_early_stopping_space(tmp_path, methods, "auto", fixed))
    assert (space.early_stopping.enabled, space.early_stopping.grace_period) == expected


def test_mo_asha_may_compare_trials_before_pruning_ends_since_it_ranks_the_target_density(tmp_path):
    early = {"enabled": True, "grace_period": 1}
    space = load_space(_early_stopping_space(tmp_path, ["weightmom", "gmp"], early))   # density is an objective
    assert space.early_stopping.enabled and space.early_stopping.grace_period == 1
    data = yaml.safe_load(_early_stopping_space(tmp_path, ["weightmom", "gmp"], early).read_text())
    data["objectives"] = [{"metric": "val_accuracy", "mode": "max"}]   # ASHA: accuracy alone
    with pytest.raises(UsageError, match=r"early_stopping\.grace_period: expected at least 15"):
        load_space(write_space(tmp_path, data, "asha.yaml"))


@pytest.mark.parametrize("methods, fixed", [(["weightmom", "gsm"], {}),
                                            (["weightmom"], {"pruner": {"unit": "step", "prune_end": 50}})])
def test_early_stopping_that_cannot_work_is_refused_and_a_finished_copy_still_reads(tmp_path, methods, fixed):
    path = _early_stopping_space(tmp_path, methods, True, fixed)
    with pytest.raises(UsageError, match=r"early_stopping\.grace_period: "):
        load_space(path)
    assert not load_space(path, import_code=False).early_stopping.enabled


def test_a_schedule_error_names_the_setting_that_fails(tmp_path):
    data = copy.deepcopy(BASE)
    data["params"]["pruner.prune_end"] = {"type": "int", "low": 5, "high": 14}
    data["params"]["pruner.prune_every"] = {"type": "categorical", "choices": [1, 2]}
    with pytest.raises(UsageError, match=r"params\.pruner\.prune_end: pruner\.prune_end \(14\.0\) is after"):
        load_space(write_space(tmp_path, data))
