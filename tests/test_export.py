"""`weightmom export`: every file written, parity and sizes as the acceptance states, checked by a script that
imports nothing of this project; every bad input one line, a non-zero exit and nothing in DIR; int8 calibrated on
training images only and gated on val, its failure one line, exit 1 and nothing in DIR."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from weightmom.checkpoint import load_checkpoint
from weightmom.config import TrainConfig
from weightmom.export.weights import read_weights
from weightmom_sweeps.cli import main

REPO = Path(__file__).resolve().parents[1]
VERIFY = REPO / "benchmarks" / "verify_export.py"
FILES = ["config.yaml", "model.onnx", "model.pt2", "report.json", "report.md", "samples/samples.npz",
         "samples/test_split.npz", "weights.safetensors.zst"]
INT8_FILES = sorted([*FILES, "model.int8.onnx"])
FAST = ["--latency-runs", "3"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_thread) -> Path:
    from weightmom.training import train

    path = tmp_path_factory.mktemp("ckpt") / "lenet300.pt"
    config = TrainConfig(dataset="digits", model="lenet300", method="weightmom", density=0.05, epochs=4,
                         device="cpu", val_fraction=0.1, pruner={"prune_end": 2})
    train(config, progress=False).save(str(path))
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "deploy"
    assert main(["export", str(checkpoint), "--out", str(out), "--int8", *FAST]) == 0
    return out


def test_every_file_is_written_with_the_report_the_acceptance_asks_for(exported, checkpoint):
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()) == INT8_FILES
    report = json.loads((exported / "report.json").read_text())
    parity = report["parity"]
    assert parity["passed"] and parity["onnxruntime"]["top1_agreement"] == 1.0
    assert parity["onnxruntime"]["accuracy"] == parity["torch"]["accuracy"] == report["test_accuracy"]
    assert report["test_accuracy"] == load_checkpoint(checkpoint).metrics["test_accuracy"]   # what training measured
    assert parity["test_images"] == 450                                                        # the whole test split
    latency = report["latency"]
    # At 5% density some of LeNet's hidden units end dead: the slim graph is what ships, int8 quantizes it.
    assert list(latency["table"]) == ["dense fp32", "masked fp32", "slim fp32", "slim int8"]   # one table, one run
    for model, runtimes in latency["table"].items():
        assert list(runtimes) == (["onnxruntime"] if model == "slim int8" else ["onnxruntime", "torch"])
        assert all(set(by_batch) == {"batch 1", "batch 64"} for by_batch in runtimes.values())
    assert set(latency["ratio_to_dense"]) == {"masked fp32", "slim fp32", "slim int8"} and latency["interleaved"]
    assert "unstructured sparsity buys" in latency["verdict"] and "slim int8 on ONNX Runtime" in latency["verdict"]
    assert latency["cpu"]["model"] and isinstance(latency["cpu"]["int8_dot_product"], bool)
    counts = report["counts"]
    assert counts["macs_nonzero"] < 0.1 * counts["macs_total"] and counts["params_nonzero"] < counts["params_total"]
    assert report["input"]["shape"] == ["batch", 1, 8, 8] and report["input"]["normalisation_in_graph"] is True
    markdown = (exported / "report.md").read_text()
    assert all(word in markdown for word in ("## Size", "## Parity", "## Latency", "## int8", "dense fp32",
                                             "masked fp32", "slim fp32", "slim int8", "CPU: ", "dense fp32 p50 / p50"))
    slim = report["slim"]
    assert slim["channels_removed"] and slim["vs_masked"]["passed"] and slim["vs_masked"]["max_abs_logit_diff"] <= 1e-4
    assert slim["params"] < counts["params_total"] and slim["macs"] < counts["macs_total"]
    assert yaml.safe_load((exported / "config.yaml").read_text()) == load_checkpoint(checkpoint).config


def test_int8_has_its_own_rows_and_passes_its_gate_on_val(exported):
    int8 = json.loads((exported / "report.json").read_text())["int8"]
    assert int8["gate"]["split"] == "val" and int8["gate"]["passed"] and int8["gate"]["max_drop"] == 0.01
    assert int8["val"]["images"] == 136 and int8["test"]["images"] == 450   # digits: 10% of 1,347 held out
    assert int8["val"]["fp32_accuracy"] - int8["val"]["int8_accuracy"] <= 0.01
    assert int8["calibration"] == {"images": 256, "split": "train", "seed": 0}
    assert int8["bytes"] == (exported / "model.int8.onnx").stat().st_size < int8["fp32_bytes"]
    assert all(0.9 <= int8[split]["top1_agreement"] <= 1 for split in ("val", "test"))
    markdown = (exported / "report.md").read_text()
    assert "| int8 (model.int8.onnx) |" in markdown and "never val or test" in markdown


def test_int8_calibrates_on_the_part_of_the_training_data_that_training_used(checkpoint):
    from weightmom.data.datasets import load_dataset
    from weightmom.export.quantize import calibration_images
    from weightmom.export.source import load_source

    source = load_source(checkpoint)
    whole = load_dataset("digits").train_images.numpy()
    assert len(source.train_images) + len(source.val_images) == len(whole)   # val held out of training
    images = calibration_images(source.train_images, 256)
    train_rows = {row.tobytes() for row in source.train_images.astype(np.float32)}
    assert len(images) == 256 and all(image.tobytes() in train_rows for image in images)
    assert np.array_equal(images, calibration_images(source.train_images, 256))          # reproducible
    assert len(calibration_images(source.train_images, 10**6)) == len(source.train_images)


def test_the_weights_are_small_and_are_the_checkpoints(exported, checkpoint):
    report = json.loads((exported / "report.json").read_text())
    weights = report["files"]["weights.safetensors.zst"]
    assert weights["pct_dense_fp32"] <= 8.0                                   # at 5% density
    assert weights["bytes"] < checkpoint.stat().st_size == report["sparse_checkpoint"]["bytes"]
    arrays, metadata = read_weights(exported / "weights.safetensors.zst")
    state = load_checkpoint(checkpoint).build_model().state_dict()
    assert sorted(arrays) == sorted(state) and json.loads(metadata["input_shape"]) == [1, 8, 8]
    assert all(np.array_equal(arrays[k], v.numpy()) for k, v in state.items())


def test_a_script_that_imports_nothing_of_the_project_reproduces_the_report(exported, tmp_path):
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(VERIFY.read_text()))
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in getattr(node, "names", [])
                if isinstance(node, ast.Import)} | {node.module.split(".")[0] for node in
                                                   ast.walk(ast.parse(VERIFY.read_text()))
                                                   if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime", "torch", "zstandard"}
    done = subprocess.run([sys.executable, str(VERIFY), str(exported)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnxruntime: test accuracy" in done.stdout and "torch.export: test accuracy" in done.stdout
    assert "onnxruntime int8: test accuracy" in done.stdout
    floats = sum(v.dtype.kind == "f" for v in read_weights(exported / "weights.safetensors.zst")[0].values())
    assert f"weights: {floats} of {floats} float tensors equal" in done.stdout   # not "116 of 97"


def test_the_onnx_model_takes_any_batch(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    samples = np.load(exported / "samples" / "samples.npz")
    assert samples["inputs"].dtype == np.float32 and samples["inputs"].max() <= 255
    for batch in (1, 3, 16):
        logits = session.run(None, {"input": samples["inputs"][:batch]})[0]
        assert np.abs(logits - samples["logits"][:batch]).max() <= 1e-4


def _fails(argv: list[str], out: Path, code: int, words: str, capsys) -> None:
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]   # no staging left


def test_bad_inputs_give_one_line_and_leave_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    _fails(["export", str(tmp_path / "notes.txt"), "--out", str(out)], out, 2, "not a readable checkpoint", capsys)
    _fails(["export", str(tmp_path / "missing.pt"), "--out", str(out)], out, 2, "checkpoint not found", capsys)
    _fails(["export", str(checkpoint), "--out", str(tmp_path / "no" / "deploy")], tmp_path / "nothing", 2,
           "does not exist", capsys)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(checkpoint), "--out", str(full)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and [p.name for p in full.iterdir()] == ["keep.txt"]
    _fails(["export", str(checkpoint), "--out", str(out), "--max-density", "0.1"], out, 2, "sweep folder", capsys)
    _fails(["export", str(checkpoint), "--out", str(out), "--int8", "--int8-max-drop", "2"], out, 2,
           "--int8-max-drop must be in [-1, 1]", capsys)
    _fails(["export", str(checkpoint), "--out", str(out), "--int8", "--int8-calibration", "0"], out, 2,
           "--int8-calibration must be at least 1", capsys)
    raw = torch.load(checkpoint, weights_only=True)
    raw["config"]["model"] = "no_such_module_here:build"
    torch.save(raw, tmp_path / "unbuildable.pt")
    _fails(["export", str(tmp_path / "unbuildable.pt"), "--out", str(out)], out, 2, "cannot be rebuilt", capsys)


def test_a_sweep_where_nothing_qualifies_exits_1_as_best_does(tmp_path, capsys):
    from sweeps.records.results import write_rows

    sweep, out = tmp_path / "sweep", tmp_path / "deploy"
    sweep.mkdir()
    write_rows(sweep / "trials.parquet", [{"trial_id": "t1", "state": "COMPLETE", "density": 0.3, "val_accuracy": 0.9,
                                           "test_accuracy": 0.88}])
    _fails(["export", str(sweep), "--out", str(out), "--max-density", "0.05"], out, 1, "no completed trial", capsys)
    _fails(["best", str(sweep), "--max-density", "0.05", "--out", str(tmp_path / "b.yaml")], out, 1,
           "no completed trial", capsys)


def test_a_parity_failure_fails_the_export_and_leaves_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    _fails(["export", str(checkpoint), "--out", str(out), "--parity-atol", "1e-12", *FAST], out, 1,
           "parity failed", capsys)


def test_an_int8_gate_failure_exits_1_in_one_line_and_leaves_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    # -1: int8 would have to beat fp32 by 100 points of accuracy, so the gate fails whatever the model.
    _fails(["export", str(checkpoint), "--out", str(out), "--int8", "--int8-max-drop", "-1", *FAST], out, 1,
           "int8 gate failed: val accuracy", capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == []   # no model.int8.onnx, no staging, no DIR


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dense", "weightmom"])
def test_int8_on_a_dense_and_a_weight_pruned_resnet20_passes_its_gate_or_fails_in_one_line(method, cifar_mini,
                                                                                            tmp_path, one_thread,
                                                                                            capsys):
    from weightmom.training import train

    config = TrainConfig(dataset="cifar10", data_dir=str(cifar_mini), model="resnet20", width=0.25, method=method,
                         density=1.0 if method == "dense" else 0.2, epochs=2, lr=0.1, batch_size=128, device="cpu",
                         val_fraction=0.1, **({} if method == "dense" else {"pruner": {"prune_end": 1}}))
    train(config, progress=False).save(str(tmp_path / "model.pt"))
    out = tmp_path / "deploy"
    capsys.readouterr()
    code = main(["export", str(tmp_path / "model.pt"), "--out", str(out), "--int8", *FAST])
    captured = capsys.readouterr()
    if code == 1:   # the gate may fail on a real model: then in one line, with nothing written
        assert len(captured.err.strip().splitlines()) == 1 and "int8 gate failed" in captured.err
        assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
        return
    assert code == 0 and "int8: model.int8.onnx" in captured.out, captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["int8"]["gate"]["passed"] and report["int8"]["val"]["images"] == 372   # 10% of 3,728
    assert ("At density 100% the model is dense" in report["latency"]["verdict"]) == (method == "dense")
    done = subprocess.run([sys.executable, str(VERIFY), str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "onnxruntime int8: test accuracy" in done.stdout, done.stdout + done.stderr


def test_int8_without_a_val_split_is_gated_on_test_and_says_so(tmp_path, one_thread):
    from weightmom.export import ExportOptions, export_checkpoint
    from weightmom.training import train

    config = TrainConfig(dataset="digits", model="lenet300", method="weightmom", density=0.05, epochs=4,
                         device="cpu", val_fraction=0.0, pruner={"prune_end": 2})
    train(config, progress=False).save(str(tmp_path / "model.pt"))
    report = export_checkpoint(tmp_path / "model.pt", tmp_path / "deploy",
                               ExportOptions(latency_runs=1, int8=True, int8_max_drop=1.0))
    assert "val" not in report["int8"] and report["int8"]["gate"]["split"] == "test"
    assert "no val split" in report["int8"]["gate"]["note"]
    assert "gated on test" in (tmp_path / "deploy" / "report.md").read_text()


@pytest.mark.slow
def test_export_from_a_sweep_folder_takes_the_trial_best_takes(tmp_path, local_ray, capsys):
    space = {"name": "export-sweep", "trials": 2, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False,
             "fixed": {"dataset": "digits", "model": "lenet300", "epochs": 3, "batch_size": 128, "device": "cpu",
                       "method": "weightmom", "pruner": {"prune_end": 2}},
             "params": {"density": {"type": "float", "low": 0.05, "high": 0.2, "log": True}},
             "start_points": [{"density": 0.05}, {"density": 0.2}]}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    sweep = tmp_path / "sweep"
    assert main(["sweep", str(tmp_path / "space.yaml"), "--out", str(sweep), "--verbose", "0"]) == 0
    assert main(["best", str(sweep), "--max-density", "0.3", "--out", str(tmp_path / "best.yaml"),
                 "--export", str(tmp_path / "best.pt")]) == 0
    assert f"export {tmp_path / 'best.pt'} --out" in capsys.readouterr().out   # best prints the export command
    out = tmp_path / "deploy"
    assert main(["export", str(sweep), "--max-density", "0.3", "--out", str(out), *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert yaml.safe_load((out / "config.yaml").read_text()) == best
    assert f"density {report['counts']['density']:.4f}" in report["source"]["chosen"]
    assert report["parity"]["passed"] and sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) \
        == sorted(FILES)
