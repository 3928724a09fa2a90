"""A user's own model and images, from a folder outside the project: train, sweep, export, evaluate.

The user's folder (a temp dir) holds `mymod.py` and an ImageFolder of drawn shapes (3 classes, PNGs
written with PIL by examples/make_shapes.py). Commands run there as a user runs them: `python -m
weightmom_sweeps` with that folder as the current directory, which is how `mymod` is found.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from weightmom import TrainConfig, train
from weightmom.errors import UsageError
from weightmom_sweeps.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Two prunable layers of 27C and 12C weights: the importance allocation keeps l * W_avg / 15 weights in
# layer l, a whole number when C is a multiple of 10, so density 0.1 comes out exact (not just to
# within one weight per layer).
USER_MODULE = '''
from pathlib import Path

import torch
from torch import nn
from torchvision.datasets import ImageFolder


def build(input_shape, num_classes, channels=10, marker=None):
    if marker:  # where this module was imported from, for the cluster test
        Path(marker).mkdir(parents=True, exist_ok=True)
        (Path(marker) / f"{channels}-{id(nn)}").write_text(__file__)
    return nn.Sequential(nn.Conv2d(input_shape[0], channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(4 * channels, num_classes))


def not_a_module(input_shape, num_classes):
    return 42


def nothing_to_prune(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(3 * 32 * 32))


def wrong_logits(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes + 1))


def load(data_dir):
    """A dataset by import path: torchvision's own ImageFolder (PIL images) for both splits."""
    return ImageFolder(f"{data_dir}/train"), ImageFolder(f"{data_dir}/test"), 3
'''


def make_shapes(root: Path, train: int, test: int, val: int = 0) -> Path:
    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "examples" / "make_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_shapes(root, train=train, test=test, size=40, val=val)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "mymod.py").write_text(USER_MODULE)
    make_shapes(folder / "shapes", train=36, test=12)
    return folder


def weightmom(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m weightmom_sweeps ...` in the user's folder, with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "weightmom_sweeps", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_train_a_user_model_on_an_imagefolder_from_the_users_folder(user_dir: Path) -> None:
    run = weightmom("train", "--dataset", "imagefolder", "--data-dir", "shapes", "--model", "mymod:build",
                    "--method", "weightmom", "--density", "0.1", "--epochs", "3", "--quiet",
                    "--json", "train.json", "--save", "model.pt", cwd=user_dir)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((user_dir / "train.json").read_text())
    assert metrics["num_classes"] == 3 and metrics["class_names"] == ["circle", "square", "triangle"]
    assert metrics["density"] == 0.1
    assert "density=0.1000" in run.stdout and "classes=3" in run.stdout
    assert metrics["model"] == "mymod:build" and metrics["config"]["model_args"] == {}

    evaluated = weightmom("evaluate", "model.pt", "--json", "eval.json", cwd=user_dir)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((user_dir / "eval.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    # Rebuilt by import path: from a folder where mymod is not, evaluate says so in one line.
    elsewhere = weightmom("evaluate", str(user_dir / "model.pt"), cwd=REPO)
    assert elsewhere.returncode == 2 and elsewhere.stderr.count("\n") == 1
    assert "cannot import module 'mymod'" in elsewhere.stderr


def listing(folder: Path) -> list[Path]:
    """Every file and folder but Python's bytecode cache, which importing mymod may write."""
    return sorted(p for p in folder.rglob("*") if "__pycache__" not in p.parts)


def _empty_class(root: Path) -> Path:
    (root / "train" / "star").mkdir()
    (root / "test" / "star").mkdir()
    (root / "test" / "star" / "star.png").write_bytes((root / "test" / "circle" / "circle_0000.png").read_bytes())
    return root / "train" / "star"


def _corrupt_png(root: Path) -> Path:
    png = root / "train" / "square" / "square_0001.png"
    png.write_bytes(png.read_bytes()[:60])  # a real PNG header, cut off inside the image data
    return png


def _other_classes(root: Path) -> Path:
    (root / "test" / "triangle").rename(root / "test" / "hexagon")
    return root / "test"


BAD_RUNS = {
    "module not importable": (["--model", "nope:build"], None, "cannot import module 'nope'"),
    "not a model factory": (["--model", "os:getcwd"], None, "fits neither factory(input_shape, num_classes"),
    "missing attribute": (["--model", "mymod:nothere"], None, "has no attribute 'nothere'"),
    "returns no nn.Module": (["--model", "mymod:not_a_module"], None, "returned an object of type int"),
    "nothing to prune": (["--model", "mymod:nothing_to_prune"], None, "no Conv2d or Linear layer"),
    "wrong logits": (["--model", "mymod:wrong_logits"], None, "must return (batch, 3) logits"),
    "unknown model_args": (["--model", "mymod:build", "--set", "model_args.depth=3"], None, "'depth'"),
    "width of a user model": (["--model", "mymod:build", "--width", "0.5"], None, "width applies"),
    "empty class folder": (["--model", "mymod:build"], _empty_class, "empty class folder"),
    "corrupt png": (["--model", "mymod:build"], _corrupt_png, "unreadable image"),
    "class sets differ": (["--model", "mymod:build"], _other_classes, "missing: triangle; not in train/: hexagon"),
}


@pytest.mark.parametrize("case", BAD_RUNS)
def test_bad_user_code_or_folder_is_one_line_exit_2_and_writes_nothing(case: str, user_dir: Path, tmp_path: Path,
                                                                       monkeypatch, capsys) -> None:
    args, damage, message = BAD_RUNS[case]
    data = make_shapes(tmp_path / "shapes", train=3, test=2) if damage else user_dir / "shapes"
    culprit = damage(data) if damage else None
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(user_dir)
    before = listing(user_dir)
    assert main(["train", "--quiet", "--epochs", "1", "--dataset", "imagefolder", "--data-dir", str(data), *args,
                 "--json", str(out / "m.json"), "--save", str(out / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightmom: error: ") and err.count("\n") == 1 and message in err, err
    if culprit is not None:
        assert str(culprit) in err
    assert list(out.iterdir()) == [] and listing(user_dir) == before


def test_python_api_takes_a_model_object_a_factory_and_data_objects(user_dir: Path, monkeypatch) -> None:
    from sklearn.datasets import load_digits

    from weightmom.checkpoint import load_checkpoint
    from weightmom.data.imagefolder import load_imagefolder
    from weightmom.data.sources import as_tensor_dataset

    # The user's folder as the cwd and first on sys.path, as `python -m` from it gives (a pytest-xdist worker
    # has no '' on its path); the API itself needs no import path.
    monkeypatch.chdir(user_dir)
    monkeypatch.syspath_prepend(str(user_dir))
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    import mymod

    digits = load_digits()
    images, labels = torch.tensor(digits.data.reshape(-1, 8, 8) / 16.0, dtype=torch.float32), digits.target
    data = ((images[:1500], labels[:1500]), (images[1500:], labels[1500:]), 10)
    # 6 epochs: at 2, an unlucky initialisation (the net is built from the global RNG, whatever ran before in
    # this process) ended at 0.17; at 6, the worst of 20 initialisations reached 0.455.
    config = TrainConfig(method="gmp", density=0.5, epochs=6, device="cpu")
    net = mymod.build((1, 8, 8), 10, channels=20)
    result = train(config, data=data, model=net, progress=False)
    assert result.model is net and result.metrics["model"] == "<Sequential object>"
    assert result.metrics["dataset"] == "<data>" and result.input_shape == (1, 8, 8)
    assert abs(result.metrics["density"] - 0.5) < 0.01 and result.metrics["test_accuracy"] > 0.3   # chance: 0.1
    result.save(str(user_dir / "object.pt"))
    checkpoint = load_checkpoint(user_dir / "object.pt")
    with pytest.raises(UsageError, match="passed to train"):
        checkpoint.build_model()
    rebuilt = checkpoint.build_model(mymod.build((1, 8, 8), 10, channels=20))
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values()))

    factory = train(config, data=data, model=mymod.build, progress=False)
    assert factory.metrics["model"] == "mymod:build"   # importable: recorded by its import path
    # torchvision's ImageFolder (PIL images) decodes to exactly what the imagefolder dataset holds.
    ours = load_imagefolder("shapes", 32)
    theirs = as_tensor_dataset(mymod.load("shapes"), "mymod:load", 32)
    assert torch.equal(ours.train_images, theirs.train_images) and torch.equal(ours.test_labels, theirs.test_labels)
    with pytest.raises(UsageError, match="images must be uint8, or floats in"):
        as_tensor_dataset(((images * 16, labels), (images, labels), 10), "data")


def test_a_val_folder_is_the_validation_split(tmp_path: Path) -> None:
    from weightmom.data.datasets import split_validation
    from weightmom.data.imagefolder import load_imagefolder

    folder = make_shapes(tmp_path / "shapes", train=8, test=3, val=2)
    dataset = load_imagefolder(str(folder), 16)
    assert (dataset.size("train"), dataset.size("val"), dataset.size("test")) == (24, 6, 9)
    assert split_validation(dataset, 0.1) is dataset   # nothing carved from train/: val/ is the split
    assert dataset.val_labels.tolist() == [0, 0, 1, 1, 2, 2] and dataset.val_images.shape == (6, 3, 16, 16)
    result = train(TrainConfig(dataset="imagefolder", data_dir=str(folder), image_size=16, epochs=1,
                               device="cpu", model="digits_cnn", width=0.25), progress=False)
    assert (result.metrics["train_size"], result.metrics["val_size"]) == (24, 6) and "val_accuracy" in result.metrics
    (folder / "val" / "circle").rename(folder / "val" / "disc")
    with pytest.raises(UsageError, match="val: class folders differ"):
        load_imagefolder(str(folder), 16)


def test_a_folder_too_big_to_decode_in_memory_is_refused_before_decoding(user_dir: Path, monkeypatch) -> None:
    from weightmom.data import imagefolder

    monkeypatch.setattr(imagefolder, "MEMORY_SHARE", 1e-9)   # this machine, pretending to be tiny
    monkeypatch.setattr(imagefolder, "decode", lambda path, size: pytest.fail("decoded before the check"))
    with pytest.raises(UsageError, match=r"144 images at image_size 224 decode to 0\.0 GiB.*smaller image_size"):
        imagefolder.load_imagefolder(str(user_dir / "shapes"), 224)


def test_dataset_by_import_path_from_the_command_line(user_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(user_dir)
    out = tmp_path / "m.json"
    assert main(["train", "--quiet", "--dataset", "mymod:load", "--data-dir", "shapes", "--model", "mymod:build",
                 "--set", "model_args.channels=20", "--epochs", "1", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_classes"] == 3 and metrics["config"]["model_args"] == {"channels": 20}
    assert main(["train", "--quiet", "--dataset", "mymod:nope", "--epochs", "1"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def write_space(folder: Path, **fixed) -> Path:
    space = {"name": "own-model", "trials": 2, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False,
             "fixed": {"dataset": "imagefolder", "data_dir": "shapes", "model": "mymod:build", "epochs": 3,
                       "batch_size": 16, "device": "cpu", "method": "weightmom", **fixed},
             "params": {"density": {"type": "float", "low": 0.1, "high": 0.3},
                        "model_args.channels": {"type": "categorical", "choices": [10, 20]}},
             "start_points": [{"density": 0.1, "model_args.channels": 10}, {"density": 0.2, "model_args.channels": 20}]}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_space_checks_user_models_and_their_arguments(user_dir: Path, monkeypatch) -> None:
    from sweeps.space.search_space import load_space

    monkeypatch.chdir(user_dir)
    space = load_space(write_space(user_dir))
    assert space.fixed["data_dir"] == str(user_dir / "shapes")   # absolute: trials run in their own folders
    config = space.train_config({**space.fixed, "density": 0.1, "model_args.channels": 20})
    assert config.model_args == {"channels": 20} and config.model == "mymod:build"
    for fixed, message in [({"model": "nope:build"}, "fixed.model: model 'nope:build': cannot import module"),
                           ({"model_args": {"depth": 2}}, "fixed.model: model 'mymod:build' cannot be called"),
                           ({"width": 0.5}, "width applies to the built-in models"),
                           ({"model": "lenet300"}, "model_args are for models given by import path"),
                           ({"data_dir": None}, "fixed.dataset: dataset imagefolder needs data_dir"),
                           ({"dataset": "imagefolders"}, "fixed.dataset: unknown dataset 'imagefolders'")]:
        path = write_space(user_dir, **fixed)
        with pytest.raises(UsageError) as err:
            load_space(path)
        assert message in str(err.value), str(err.value)


@pytest.mark.slow
def test_sweep_over_a_user_model_then_best_export_evaluates_identically(user_dir: Path, monkeypatch, capsys) -> None:
    import ray

    from sweeps.records.results import read_table

    monkeypatch.chdir(user_dir)   # the driver's folder: Ray puts it on its workers' path, so they find mymod
    write_space(user_dir)
    try:
        assert main(["sweep", "space.yaml", "--out", "sweep", "--verbose", "0"]) == 0, capsys.readouterr().err
    finally:
        ray.shutdown()
    rows = read_table(user_dir / "sweep" / "trials.parquet")
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows), rows
    assert sorted(r["config.model_args.channels"] for r in rows) == [10, 20]
    assert main(["best", "sweep", "--max-density", "1", "--out", "best.yaml", "--export", "best.pt"]) == 0
    chosen = max(rows, key=lambda r: (r["val_accuracy"], -r["density"]))
    exported = yaml.safe_load((user_dir / "best.yaml").read_text())
    assert exported["model"] == "mymod:build"
    assert exported["model_args"] == {"channels": chosen["config.model_args.channels"]}
    # The trials ran on the CPU: so does the evaluation, for the identical number. A process of its own,
    # as a user would run it, so mymod is imported afresh by the path the checkpoint records.
    evaluated = weightmom("evaluate", "best.pt", "--device", "cpu", "--json", "eval.json", cwd=user_dir)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((user_dir / "eval.json").read_text())
    assert metrics["test_accuracy"] == chosen["test_accuracy"] and metrics["num_classes"] == 3
    assert metrics["density"] == chosen["density"]
    # The sweep's folder reads back without the user's code: pareto from where mymod is not importable.
    front = weightmom("pareto", str(user_dir / "sweep"), cwd=REPO)
    assert front.returncode == 0 and "Pareto front" in front.stdout, front.stderr[-3000:]
