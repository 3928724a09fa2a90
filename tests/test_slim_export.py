"""`weightmom export` ships the slim graph (issue 36, Build 3): model.onnx and model.pt2 hold the network with every
removable channel removed, checked against the masked model (1e-4), ONNX Runtime and torch.export on the whole test
split; the report puts the dense and the slim network's params, MACs and latency side by side; the independent
verifier cuts the masked weights down to the slim graph's and finds them equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from weightmom.config import TrainConfig
from weightmom.export import ExportOptions, export_checkpoint
from weightmom.export.weights import read_weights

REPO = Path(__file__).resolve().parents[1]
VERIFY = REPO / "benchmarks" / "verify_export.py"
OPTIONS = ExportOptions(latency_runs=3, int8=True, int8_max_drop=1.0)   # the int8 gate is test_export's subject


def _export(config: TrainConfig, folder: Path) -> tuple[dict, Path]:
    from weightmom.training import train

    train(config, progress=False).save(str(folder / "model.pt"))
    return export_checkpoint(folder / "model.pt", folder / "deploy", OPTIONS), folder / "deploy"


def _verify(out: Path) -> str:
    done = subprocess.run([sys.executable, str(VERIFY), str(out)], capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _assert_slim_shipped(report: dict, out: Path) -> None:
    slim, counts, latency = report["slim"], report["counts"], report["latency"]
    assert slim["channels_removed"] and slim["tensors_cut"] > 0
    assert slim["params"] < counts["params_total"] and slim["macs"] < counts["macs_total"]   # smaller than dense
    check = slim["vs_masked"]
    assert check["passed"] and check["top1_agreement"] == 1.0 and check["max_abs_logit_diff"] <= 1e-4
    parity = report["parity"]
    assert parity["passed"] and {"slim torch", "onnxruntime", "torch.export"} <= set(parity)
    assert list(latency["table"]) == ["dense fp32", "masked fp32", "slim fp32", "slim int8"]
    assert set(latency["ratio_to_dense"]["slim fp32"]) == {"onnxruntime", "torch"}
    assert "Slim (removable channels removed)" in latency["verdict"]
    # The graphs hold the slim weights; the weights file the masked ones, with what to cut in its metadata.
    arrays, metadata = read_weights(out / "weights.safetensors.zst")
    kept = json.loads(metadata["slim_kept"])
    assert kept and all(len(index) < arrays[name].shape[int(dim)] for name, dims in kept.items()
                        for dim, index in dims.items())
    markdown = (out / "report.md").read_text()
    assert "slim network (model.onnx)" in markdown and "| slim fp32 | onnxruntime |" in markdown
    assert "slim against masked (torch, whole test split)" in markdown
    printed = _verify(out)
    floats = sum(v.dtype.kind == "f" for v in arrays.values())
    assert f"weights: {floats} of {floats} float tensors equal" in printed


def test_a_channel_pruned_lenet_ships_its_slim_graph_with_parity(tmp_path, one_thread):
    config = TrainConfig(dataset="digits", model="lenet300", method="weightmom", density=0.3, epochs=3, device="cpu",
                         val_fraction=0.1, pruner={"prune_end": 2, "granularity": "channel"})
    report, out = _export(config, tmp_path)
    _assert_slim_shipped(report, out)
    assert report["slim"]["params"] < 0.5 * report["counts"]["params_total"]   # 30% of the weights kept


def test_a_dense_model_has_nothing_to_slim_and_ships_the_masked_graph(tmp_path, one_thread):
    config = TrainConfig(dataset="digits", model="lenet300", method="dense", density=1.0, epochs=1, device="cpu",
                         val_fraction=0.1)
    report, out = _export(config, tmp_path)
    slim = report["slim"]
    assert not slim["channels_removed"] and slim["vs_masked"] is None
    assert "slim network is the masked one" in slim["note"]
    assert slim["params"] == report["counts"]["params_total"] and slim["macs"] == report["counts"]["macs_total"]
    assert list(report["latency"]["table"]) == ["dense fp32", "masked fp32", "masked int8"]
    assert json.loads(read_weights(out / "weights.safetensors.zst")[1]["slim_kept"]) == {}
    _verify(out)


@pytest.mark.slow
def test_a_channel_pruned_vgg16_on_cifar10_mini_ships_its_slim_graph(cifar_mini, tmp_path, one_thread):
    config = TrainConfig(dataset="cifar10", data_dir=str(cifar_mini), model="vgg16", width=0.125, method="weightmom",
                         density=0.25, epochs=1, lr=0.05, batch_size=128, device="cpu", val_fraction=0.1,
                         pruner={"prune_end": 1, "granularity": "channel"})
    report, out = _export(config, tmp_path)
    _assert_slim_shipped(report, out)
