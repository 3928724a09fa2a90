"""The export, start to end: stage every file in a temporary folder beside DIR, check parity, then rename.

A failure at any step (parity and the int8 gate included) removes the staging folder, so DIR holds a whole
export or nothing.
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
from weightmom.export.latency import REFERENCE, latency_table, ratios_to_dense, verdict
from weightmom.export.machine import cpu_info
from weightmom.export.options import ExportOptions
from weightmom.export.parity import check_parity, parity_report
from weightmom.export.quantize import INT8, calibration_images, check_gate, int8_report, quantize
from weightmom.export.runtimes import Runner, ort_runner, torch_runner, torch_threads
from weightmom.export.slimming import check_slim, slim_of
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
    slim_net, kept = slim_of(source.model, shape)   # the masked model itself when no channel can be removed
    slim = Normalized(slim_net, source.mean, source.std).eval() if kept else None
    shipped = slim or pruned   # what model.onnx and model.pt2 hold
    graphs.write_pt2(graphs.export_program(shipped, shape), staging / "model.pt2")
    proto = graphs.onnx_proto(shipped, shape, options.opset)
    graphs.write_onnx(proto, staging / "model.onnx")
    _write_data_files(source, shipped, staging, options, config_text, kept)
    with torch_threads(options.threads):
        parity = parity_report({"torch": torch_runner(pruned), **({"slim torch": torch_runner(slim)} if slim else {}),
                                "onnxruntime": ort_runner(str(staging / "model.onnx"), options.threads),
                                "torch.export": torch_runner(torch.export.load(str(staging / "model.pt2")).module())},
                               source.test_images, source.test_labels, options.parity_atol)
        check_parity(parity)
        slim_check = check_slim(parity, _logit_scale(pruned, source.test_images)) if slim else None
        int8 = _int8(source, staging, options) if options.int8 else None   # before latency: a failed gate ends here
        latency = _latency(source, latency_models(source, pruned, staging, options, slim), options)
    result = _report(source, staging, parity, latency, graphs.opset_of(proto), int8)
    result["slim"] = _slim_report(slim_net, kept, slim_check, shape)
    result["source"] |= origin
    (staging / "report.json").write_text(json.dumps(result, indent=2))
    (staging / "report.md").write_text(report.markdown(result))
    return result


def _logit_scale(model: Normalized, images: np.ndarray) -> float:
    with torch.inference_mode():
        return float(model(torch.from_numpy(images[:256].astype(np.float32))).abs().max())


def _write_data_files(source: Source, pruned: Normalized, staging: Path, options: ExportOptions,
                      config_text: str | None, kept: dict) -> None:
    """`pruned`: the model the graphs hold (the slim one when channels were removed); the weights file is always the
    masked state_dict, with `slim_kept` saying how to cut it down to the graphs' tensors."""
    checkpoint = source.checkpoint
    metadata = {"format": report.FORMAT, "model": str(checkpoint.config["model"]),
                "input_shape": json.dumps(list(checkpoint.input_shape)), "num_classes": str(checkpoint.num_classes),
                "mean": json.dumps(source.mean.tolist()), "std": json.dumps(source.std.tolist()),
                "slim_kept": json.dumps(kept)}
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


def _int8(source: Source, staging: Path, options: ExportOptions) -> dict:
    """model.int8.onnx, calibrated on training images; its accuracy beside fp32's; raises Int8Failed."""
    images = calibration_images(source.train_images, options.int8_calibration)
    quantize(staging / "model.onnx", staging / INT8, images, graphs.INPUT)
    splits = {"val": None if source.val_images is None else (source.val_images, source.val_labels),
              "test": (source.test_images, source.test_labels)}
    result = int8_report(ort_runner(str(staging / "model.onnx"), options.threads),
                         ort_runner(str(staging / INT8), options.threads), splits, options.int8_max_drop, len(images))
    check_gate(result)
    return result


MODELS = {REFERENCE: "the same architecture, freshly initialised (dense kernels do not look at values)",
          "masked fp32": "the masked model, pruned weights zeros: model.onnx when no channel could be removed, else "
                         "its own ONNX graph (ONNX Runtime), and the masked torch model",
          "masked int8": f"{INT8} (ONNX Runtime only): model.onnx quantized",
          "slim fp32": "model.onnx (ONNX Runtime) and the slim torch model: every removable channel removed",
          "slim int8": f"{INT8} (ONNX Runtime only): the slim graph quantized"}


def latency_models(source: Source, pruned: Normalized, staging: Path, options: ExportOptions,
                   slim: Normalized | None = None) -> dict[str, dict[str, Runner]]:
    """The latency table's rows, dense fp32 first (the reference); "slim fp32" (and "slim int8" rather than "masked
    int8") when channels were removed, model.onnx being then the slim graph."""
    shape = source.checkpoint.input_shape
    dense = Normalized(source.dense, source.mean, source.std).eval()
    dense_onnx = graphs.onnx_proto(dense, shape, options.opset).SerializeToString()
    masked_onnx = graphs.onnx_proto(pruned, shape, options.opset).SerializeToString() if slim else None
    models = {REFERENCE: {"onnxruntime": ort_runner(dense_onnx, options.threads), "torch": torch_runner(dense)},
              "masked fp32": {"onnxruntime": ort_runner(masked_onnx or str(staging / "model.onnx"), options.threads),
                              "torch": torch_runner(pruned)}}
    if slim is not None:
        models["slim fp32"] = {"onnxruntime": ort_runner(str(staging / "model.onnx"), options.threads),
                               "torch": torch_runner(slim)}
    if (staging / INT8).exists():
        models["slim int8" if slim else "masked int8"] = {"onnxruntime": ort_runner(str(staging / INT8),
                                                                                     options.threads)}
    return models


def _latency(source: Source, models: dict[str, dict[str, Runner]], options: ExportOptions) -> dict:
    table = latency_table(models, source.checkpoint.input_shape, options.latency_batches, options.latency_runs,
                          options.latency_warmup)
    ratios = ratios_to_dense(table)
    density = float(source.checkpoint.metrics.get("density", float("nan")))
    return {"threads": options.threads, "runs": options.latency_runs, "warmup": options.latency_warmup,
            "interleaved": True, "reference": REFERENCE, "cpu": cpu_info(),
            "models": {name: MODELS.get(name, name) for name in models}, "table": table,
            "ratio_to_dense": ratios, "verdict": verdict(ratios, density)}


def _report(source: Source, staging: Path, parity: dict, latency: dict, opset: int, int8: dict | None) -> dict:
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
            "parity": parity, "latency": latency, "counts": counts, "versions": report.versions(opset),
            **({"int8": _int8_sizes(int8, staging)} if int8 else {})}


def _slim_report(slim: torch.nn.Module, kept: dict, check: dict | None, shape: tuple[int, ...]) -> dict:
    """The slim network's size beside the dense one's (counts), and its parity with the masked model."""
    return {"channels_removed": bool(kept), "tensors_cut": len(kept),
            "params": count_params(slim)["params_total"], "macs": count_macs(slim, shape)["macs_total"],
            "vs_masked": check,
            "note": ("model.onnx and model.pt2 hold the slim network; weights.safetensors.zst the masked one "
                     "(its slim_kept metadata cuts it down)") if kept else
                    "no channel could be removed: the slim network is the masked one, and model.onnx holds it"}


def _int8_sizes(int8: dict, staging: Path) -> dict:
    fp32, quantized = (staging / "model.onnx").stat().st_size, (staging / INT8).stat().st_size
    return {"file": INT8, "bytes": quantized, "fp32_bytes": fp32, "pct_model_onnx": round(100 * quantized / fp32, 2),
            **int8}
