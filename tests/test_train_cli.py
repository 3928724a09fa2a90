"""End to end: `weightmom train` and `weightmom evaluate` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from weightmom import TrainConfig, train
from weightmom_sweeps.cli import main

DIGITS = ["--dataset", "digits", "--model", "lenet300", "--quiet"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightmom_sweeps", *args], capture_output=True, text=True,
                          timeout=300)


def test_dense_lenet300_on_digits_reaches_95_percent(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run_cli("train", *DIGITS, "--epochs", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["params_total"] == 50_610
    assert metrics["params_prunable"] == 50_200
    assert metrics["density"] == 1.0 and metrics["compression_ratio"] == 1.0
    for key in ("test_loss", "train_loss", "epochs", "train_seconds", "params_nonzero", "density_total",
                "layer_densities", "model", "dataset", "method", "config"):
        assert key in metrics
    assert metrics["config"]["epochs"] == 20 and metrics["config"]["method"] == "dense"


def test_cifar_mini_is_read_whole_and_learns(cifar_mini: Path) -> None:
    epochs_seen = []
    result = train(TrainConfig(dataset="cifar10", data_dir=str(cifar_mini), model="resnet20", width=0.25,
                               epochs=3, lr=0.1, batch_size=128), report=epochs_seen.append)
    assert [m["epoch"] for m in epochs_seen] == [1, 2, 3]
    assert result.metrics["test_accuracy"] > 0.2  # chance is 0.1
    assert result.input_shape == (3, 32, 32)


@pytest.mark.parametrize("method", ["weightmom", "gmp", "snip", "gsm", "random"])
def test_every_method_hits_the_density(method: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.json"
    assert main(["train", *DIGITS, "--method", method, "--density", "0.05", "--epochs", "20",
                 "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert 0.0495 <= metrics["density"] <= 0.0505
    assert metrics["method"] == method and "pruner_config" in metrics
    assert sum(metrics["layer_densities"].values()) > 0
    if method in ("weightmom", "gmp"):
        assert metrics["test_accuracy"] >= 0.93


def test_random_stays_below_weightmom() -> None:
    accuracy = {m: train(TrainConfig(method=m, density=0.05, epochs=20), progress=False).metrics["test_accuracy"]
                for m in ("weightmom", "random")}
    assert accuracy["random"] < accuracy["weightmom"]


def test_sparse_checkpoint_is_small_and_reloads_exactly(tmp_path: Path, capsys) -> None:
    sparse, dense = tmp_path / "sparse.pt", tmp_path / "dense.pt"
    trained = tmp_path / "trained.json"
    assert main(["train", *DIGITS, "--method", "weightmom", "--density", "0.05", "--save", str(sparse),
                 "--json", str(trained), "--save-masks", str(tmp_path / "masks.pt")]) == 0
    assert main(["train", *DIGITS, "--epochs", "1", "--save", str(dense)]) == 0
    assert sparse.stat().st_size <= 0.15 * dense.stat().st_size

    reloaded = tmp_path / "reloaded.json"
    assert main(["evaluate", str(sparse), "--json", str(reloaded)]) == 0
    before, after = json.loads(trained.read_text()), json.loads(reloaded.read_text())
    assert after["test_accuracy"] == before["test_accuracy"]
    assert after["params_nonzero"] == before["params_nonzero"]


def test_n2nskip_at_5_percent_keeps_the_budget_beats_random_and_reloads_exactly(tmp_path: Path, capsys) -> None:
    """The acceptance run: skips built and counted, density over the network's own size, the checkpoint
    (which carries the skips' description) re-measured identically."""
    out, saved, reloaded = tmp_path / "r.json", tmp_path / "n2nskip.pt", tmp_path / "reloaded.json"
    assert main(["train", *DIGITS, "--method", "n2nskip", "--density", "0.05", "--epochs", "20",
                 "--json", str(out), "--save", str(saved)]) == 0
    metrics = json.loads(out.read_text())
    assert 0.0495 <= metrics["density"] <= 0.0505
    assert metrics["params_skip"] > 0 and metrics["skips"] >= 1 and metrics["params_prunable"] == 50_200
    assert abs(metrics["params_nonzero"] - round(0.05 * 50_200)) <= len(metrics["layer_densities"])
    random = train(TrainConfig(method="random", density=0.05, epochs=20), progress=False).metrics
    assert metrics["test_accuracy"] >= random["test_accuracy"]

    assert main(["evaluate", str(saved), "--json", str(reloaded)]) == 0
    after = json.loads(reloaded.read_text())
    assert after["test_accuracy"] == metrics["test_accuracy"]
    assert after["test_loss"] == metrics["test_loss"]   # same inputs too: normalised with the run's split
    for key in ("params_nonzero", "params_skip", "skips", "density"):
        assert after[key] == metrics[key], key


def test_masks_apply_through_torch_prune(tmp_path: Path, capsys) -> None:
    import torch

    from weightmom.checkpoint import apply_masks_with_torch_prune, load_checkpoint

    path = tmp_path / "m.pt"
    assert main(["train", *DIGITS, "--method", "gmp", "--density", "0.1", "--epochs", "3", "--save", str(path)]) == 0
    checkpoint = load_checkpoint(path)
    model = checkpoint.build_model()
    assert {"1.weight", "3.weight"} <= set(checkpoint.masks)  # the layers the allocation pruned
    with torch.no_grad():
        for module in model:
            if hasattr(module, "weight"):
                module.weight.normal_()  # overwrite everything: the masks alone must zero it again
    apply_masks_with_torch_prune(model, checkpoint.masks)
    modules = dict(model.named_modules())
    for name, mask in checkpoint.masks.items():
        module = modules[name.rsplit(".", 1)[0]]
        assert hasattr(module, "weight_mask") and torch.equal(module.weight_mask.bool(), mask)
        assert bool((module.weight[~mask] == 0).all()) and bool((module.weight[mask] != 0).all())


def test_config_file_and_set_overrides(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("method: weightmom\ndensity: 0.2\nepochs: 3\npruner:\n  window: 3\n")
    out = tmp_path / "o.json"
    assert main(["train", "--config", str(config), "--set", "pruner.threshold=inf", "--set", "lr=0.02",
                 "--quiet", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["lr"] == 0.02 and metrics["config"]["epochs"] == 3
    assert metrics["pruner_config"]["window"] == 3 and metrics["pruner_config"]["threshold"] == "inf"
    assert abs(metrics["density"] - 0.2) < 0.001


BAD_INPUTS = [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--set", "nope=1"], "unknown config key 'nope'"),
    (["--density", "0"], "density must be in (0, 1]"),
    (["--density", "1.5"], "density must be in (0, 1]"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--lr", "-0.1"], "lr must be positive"),
    (["--dataset", "cifar10", "--data-dir", "/does/not/exist"], "/does/not/exist"),
    (["--json", "/does/not/exist/out.json"], "does not exist"),
    (["--method", "weightmom", "--set", "pruner.window=0.5"], "pruner.window must be >= 1"),
    (["--method", "weightmom", "--set", "pruner.threshold=0"], "pruner.threshold must be > 0"),
    (["--method", "weightmom", "--set", "pruner.prune_start=5", "--set", "pruner.prune_end=2"],
     "pruner.prune_end (2.0) is before pruner.prune_start"),
    (["--method", "weightmom", "--set", "pruner.allocation=magic"], "unknown pruner.allocation 'magic'"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--method", "weightmom", "--set", "pruner.nope=1"], "unknown config key 'pruner.nope'"),
    (["--epochs", "many"], "invalid int value"),
    (["--method", "n2nskip", "--set", "pruner.skip_fraction=1.5"], "pruner.skip_fraction must be in (0, 1)"),
    (["--method", "n2nskip", "--set", "pruner.hops=[1]"], "pruner.hops must be a non-empty list of integers >= 2"),
    (["--method", "n2nskip", "--set", "pruner.base=nope"], "unknown pruner.base 'nope'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.json"
    json_args = [] if "--json" in args else ["--json", str(out)]
    assert main(["train", "--quiet", "--epochs", "1", *args, *json_args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("weightmom: error: ")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_data_dir_layout_from_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.json"
    result = run_cli("train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--json", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert str(tmp_path / "empty") in result.stderr
    assert not out.exists()


def test_unwritable_output_leaves_nothing(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "keep.json"
    existing.write_text("precious")
    assert main(["train", "--quiet", "--epochs", "1", "--json", str(tmp_path), "--save", str(existing)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert existing.read_text() == "precious"


def test_diverging_training_is_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.json"
    assert main(["train", "--quiet", "--epochs", "2", "--lr", "1e6", "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("weightmom: error: training diverged in epoch 1") and err.count("\n") == 1
    assert not out.exists()
