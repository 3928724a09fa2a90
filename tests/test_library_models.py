"""Models as torchvision and timm write them: `factory(num_classes=N, **model_args)`, by import path.

Trained for one epoch on a small ImageFolder of drawn shapes (examples/make_shapes.py) at 16x16, so a
ResNet-18 costs seconds on a CPU. The timm tests skip where timm (the `timm` extra) is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.test_own_model import make_shapes
from weightmom.errors import UsageError
from weightmom.models import KEYWORD_FORM, PROJECT_FORM, create_model, factory_form
from weightmom_sweeps.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TORCHVISION = "torchvision.models:resnet18"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """33 training images: 30 after the held-out 10%, batches of 16 and 14. (A batch of one would stop a
    ResNet in training: BatchNorm needs two values per channel, and the last stage is 1x1.)"""
    return make_shapes(tmp_path_factory.mktemp("library") / "shapes", train=11, test=4)


def train(shapes: Path, out: Path, model: str, *args: str) -> int:
    return main(["train", "--quiet", "--dataset", "imagefolder", "--data-dir", str(shapes), "--image-size", "16",
                 "--model", model, *args, "--method", "gmp", "--density", "0.1", "--epochs", "1",
                 "--batch-size", "16", "--device", "cpu", "--json", str(out / "m.json"), "--save", str(out / "m.pt")])


def project_build(input_shape, num_classes, channels=8):
    """The project's own form, for the rule's table."""


def defaulted_classes(input_shape, num_classes=10):
    """A second parameter with a default is not the project's form."""


def test_the_form_follows_the_signature() -> None:
    import torchvision.models

    assert factory_form(project_build, {}) == PROJECT_FORM
    assert factory_form(torchvision.models.resnet18, {}) == KEYWORD_FORM       # (*, weights=None, **kwargs)
    assert factory_form(defaulted_classes, {}) == KEYWORD_FORM
    assert factory_form(project_build, {"input_shape"}) == KEYWORD_FORM         # model_args sets it: not positional


def test_a_torchvision_model_trains_and_its_checkpoint_reloads(shapes: Path, tmp_path: Path, capsys) -> None:
    assert train(shapes, tmp_path, TORCHVISION) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["model"] == TORCHVISION and metrics["num_classes"] == 3 and metrics["train_size"] == 30
    assert metrics["params_total"] == 11_178_051   # torchvision's resnet18 with a 3-class head
    assert abs(metrics["density"] - 0.1) < 1e-3
    assert main(["evaluate", str(tmp_path / "m.pt"), "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["test_accuracy"] == metrics["test_accuracy"]


def test_model_args_num_classes_may_agree_with_the_data_never_contradict_it(shapes: Path, tmp_path: Path,
                                                                           capsys) -> None:
    model = create_model(TORCHVISION, (3, 16, 16), 3, model_args={"num_classes": 3})
    assert model.fc.out_features == 3
    assert train(shapes, tmp_path, TORCHVISION, "--set", "model_args.num_classes=100") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_args.num_classes=100 contradicts the data's 3 classes" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, message", [
    ("os:getcwd", f"fits neither {PROJECT_FORM} (two required positional parameters first) nor {KEYWORD_FORM}"),
    ("json:dumps", f"cannot be called as {KEYWORD_FORM}: missing a required argument: 'obj'"),
    ("timm:create_model", "missing a required argument: 'model_name'"),
])
def test_a_factory_that_fits_no_form_is_one_line_and_exit_2(model: str, message: str, shapes: Path,
                                                          tmp_path: Path, capsys) -> None:
    if model.startswith("timm"):
        pytest.importorskip("timm")
    assert train(shapes, tmp_path, model) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightmom: error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_timm_model_by_create_model_and_model_name(shapes: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("timm")
    assert train(shapes, tmp_path, "timm:create_model", "--set", "model_args.model_name=test_resnet") == 0, \
        capsys.readouterr().err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["config"]["model_args"] == {"model_name": "test_resnet"} and metrics["num_classes"] == 3
    assert abs(metrics["density"] - 0.1) < 1e-3
    assert main(["evaluate", str(tmp_path / "m.pt"), "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    with pytest.raises(UsageError, match=r"failed to build: RuntimeError: Unknown model \(resnet9000\)"):
        create_model("timm:create_model", (3, 16, 16), 3, model_args={"model_name": "resnet9000"})


@pytest.mark.slow
def test_a_sweep_of_a_torchvision_model_at_a_tiny_budget(tmp_path: Path, monkeypatch, capsys) -> None:
    import ray

    from sweeps.records.results import read_table

    shapes = make_shapes(tmp_path / "shapes", train=20, test=4)   # 54 training images: batches of 16, 16, 16, 6
    space = {"name": "torchvision", "trials": 2, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False,
             "fixed": {"dataset": "imagefolder", "data_dir": str(shapes), "image_size": 16, "model": TORCHVISION,
                       "epochs": 1, "batch_size": 16, "device": "cpu", "method": "gmp"},
             "params": {"density": {"type": "float", "low": 0.05, "high": 0.2}},
             "start_points": [{"density": 0.05}, {"density": 0.2}]}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["sweep", "space.yaml", "--out", "sweep", "--verbose", "0"]) == 0, capsys.readouterr().err
    finally:
        ray.shutdown()
    rows = read_table(tmp_path / "sweep" / "trials.parquet")
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows), rows
    assert sorted(round(r["density"], 3) for r in rows) == [0.05, 0.2]
    assert all(r["config.model"] == TORCHVISION for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_a_torchvision_model_is_channel_pruned_slimmed_and_exported_with_parity(shapes: Path, tmp_path: Path,
                                                                               name: str) -> None:
    assert train(shapes, tmp_path, f"torchvision.models:{name}", "--set", "pruner.granularity=channel") == 0
    deploy = tmp_path / "deploy"
    assert main(["export", str(tmp_path / "m.pt"), "--out", str(deploy), "--latency-runs", "3"]) == 0
    report = json.loads((deploy / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["onnxruntime"]["top1_agreement"] == 1.0
    assert report["test_accuracy"] == json.loads((tmp_path / "m.json").read_text())["test_accuracy"]
    slim = report["slim"]   # the exported graph is the slim one: whole channels gone, logits as the masked model's
    assert slim["channels_removed"] and slim["vs_masked"]["passed"] and slim["vs_masked"]["max_abs_logit_diff"] <= 1e-4
    assert slim["params"] < report["counts"]["params_total"]
