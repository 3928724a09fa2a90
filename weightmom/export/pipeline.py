"""The export, start to end: stage every file in a temporary folder beside DIR, check parity, then rename.

A failure at any step (parity included) removes the staging folder, so DIR holds a whole export or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from weightmom.export import graphs, report
from weightmom.export.counting import count_macs, count_params
from weightmom.export.latency import latency_table, speedups, verdict
from weightmom.export.options import ExportOptions
from weightmom.export.parity import check_parity, parity_report
from weightmom.export.runtimes import ort_runner, torch_runner, torch_threads
from weightmom.export.source import Source, check_out_dir, load_source
from weightmom.export.weights import dense_fp32_bytes, write_weights
from weightmom.export.wrapper import Normalized

WEIGHTS = "weights.safetensors.zst"


def export_checkpoint(checkpoint: str | Path, out: str | Path, options: ExportOptions | None = None,
                      config_text: str | None = None, origin: dict | None = None) -> dict:
    """Write DIR = `out` from a sparse checkpoint; return report.json's content.

    `config_text`: config.yaml's text (default: the checkpoint's config); `origin`: where the checkpoint came from
    (a sweep's trial), merged into report.json's "source".
    """
    out, options = Path(out), options or ExportOptions()
    check_out_dir(out)
    source = load_source(checkpoint, options.data_dir)
    staging = Path(tempfile.mkdtemp(dir=out.absolute().parent, prefix=f".{out.name}.export-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)   # mkdtemp makes 0700; DIR gets the usual permissions
    try:
        result = _write_all(source, staging, options, config_text, origin or {})
        if out.exists():
            out.rmdir()   # empty, checked above; the rename below cannot replace a folder otherwise
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return result


def _write_all(source: Source, staging: Path, options: ExportOptions, config_text: str | None,
               origin: dict) -> dict:
    shape = source.checkpoint.input_shape
    pruned = Normalized(source.model, source.mean, source.std).eval()
    graphs.write_pt2(graphs.export_program(pruned, shape), staging / "model.pt2")
    proto = graphs.onnx_proto(pruned, shape, options.opset)
    graphs.write_onnx(proto, staging / "model.onnx")
    _write_data_files(source, pruned, staging, options, config_text)
    with torch_threads(options.threads):
        parity = parity_report({"torch": torch_runner(pruned),
                                "onnxruntime": ort_runner(str(staging / "model.onnx"), options.threads),
                                "torch.export": torch_runner(torch.export.load(str(staging / "model.pt2")).module())},
                               source.test_images, source.test_labels, options.parity_atol)
        check_parity(parity)
        latency = _latency(source, pruned, staging, options)
    result = _report(source, staging, parity, latency, graphs.opset_of(proto))
    result["source"] |= origin
    (staging / "report.json").write_text(json.dumps(result, indent=2))
    (staging / "report.md").write_text(report.markdown(result))
    return result


def _write_data_files(source: Source, pruned: Normalized, staging: Path, options: ExportOptions,
                      config_text: str | None) -> None:
    checkpoint = source.checkpoint
    metadata = {"format": report.FORMAT, "model": str(checkpoint.config["model"]),
                "input_shape": json.dumps(list(checkpoint.input_shape)), "num_classes": str(checkpoint.num_classes),
                "mean": json.dumps(source.mean.tolist()), "std": json.dumps(source.std.tolist())}
    write_weights(staging / WEIGHTS, source.model.state_dict(), metadata, options.zstd_level)
    (staging / "config.yaml").write_text(config_text or yaml.safe_dump(checkpoint.config, sort_keys=False))
    (staging / "samples").mkdir()
    inputs = source.test_images[:options.samples].astype(np.float32)
    with torch.inference_mode():
        logits = pruned(torch.from_numpy(inputs)).numpy()
    np.savez(staging / "samples" / "samples.npz", inputs=inputs, logits=logits,
             labels=source.test_labels[:options.samples])
    # The whole test split (uint8, lossless): what a verifier needs to reproduce the reported accuracy alone.
    np.savez_compressed(staging / "samples" / "test_split.npz", images=source.test_images, labels=source.test_labels)


def _latency(source: Source, pruned: Normalized, staging: Path, options: ExportOptions) -> dict:
    shape = source.checkpoint.input_shape
    dense = Normalized(source.dense, source.mean, source.std).eval()
    dense_onnx = graphs.onnx_proto(dense, shape, options.opset).SerializeToString()
    runners = {"pruned": {"onnxruntime": ort_runner(str(staging / "model.onnx"), options.threads),
                          "torch": torch_runner(pruned)},
               "dense": {"onnxruntime": ort_runner(dense_onnx, options.threads), "torch": torch_runner(dense)}}
    table = latency_table(runners, shape, options.latency_batches, options.latency_runs, options.latency_warmup)
    ratios = speedups(table)
    density = float(source.checkpoint.metrics.get("density", float("nan")))
    return {"threads": options.threads, "runs": options.latency_runs, "table": table,
            "speedup_dense_over_pruned": ratios, "verdict": verdict(ratios, density)}


def _report(source: Source, staging: Path, parity: dict, latency: dict, opset: int) -> dict:
    checkpoint, model = source.checkpoint, source.model
    dense_fp32 = dense_fp32_bytes(model.state_dict())
    counts = {**count_params(model), **count_macs(model, checkpoint.input_shape),
              "density": float(checkpoint.metrics.get("density", float("nan")))}
    config = checkpoint.config
    return {"format": report.FORMAT,
            "source": {"checkpoint": str(source.path), "model": config["model"], "dataset": config["dataset"],
                       "method": config["method"], "test_accuracy_recorded": checkpoint.metrics.get("test_accuracy")},
            "input": report.input_contract(checkpoint.input_shape, source.mean, source.std, checkpoint.num_classes,
                                           checkpoint.class_names),
            "test_accuracy": parity["torch"]["accuracy"],
            "dense_fp32_bytes": dense_fp32,
            "files": report.file_sizes(staging, dense_fp32),
            "sparse_checkpoint": report.size_entry(source.path.stat().st_size, dense_fp32),
            "parity": parity, "latency": latency, "counts": counts, "versions": report.versions(opset)}
