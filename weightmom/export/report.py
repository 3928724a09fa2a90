"""report.json (everything measured, machine-readable) and report.md (the same, for a person)."""

from __future__ import annotations

import platform
from pathlib import Path

from weightmom.export.machine import describe as cpu_line

FORMAT = "weightmom-export/1"
MB = 1e6


def size_entry(nbytes: int, dense_fp32: int) -> dict:
    return {"bytes": nbytes, "mb": round(nbytes / MB, 4), "pct_dense_fp32": round(100 * nbytes / dense_fp32, 2)}


def file_sizes(folder: Path, dense_fp32: int) -> dict:
    return {str(p.relative_to(folder)): size_entry(p.stat().st_size, dense_fp32)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def input_contract(input_shape: tuple[int, ...], mean, std, num_classes: int, class_names) -> dict:
    return {"name": "input", "shape": ["batch", *input_shape], "dtype": "float32", "range": [0.0, 255.0],
            "meaning": "pixel values of the uint8 images the model was trained on, as float32, (N, C, H, W)",
            "normalisation": {"formula": "(x - mean) / std per channel", "mean": [float(v) for v in mean],
                              "std": [float(v) for v in std]},
            "normalisation_in_graph": True,
            "output": {"name": "logits", "shape": ["batch", num_classes], "dtype": "float32"},
            "class_names": list(class_names) if class_names else None}


def versions(opset: int) -> dict:
    import onnx
    import onnxruntime
    import onnxscript
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": opset, "python": platform.python_version(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}


def _size_rows(report: dict) -> list[str]:
    rows = ["| file | MB | % of dense fp32 |", "| --- | ---: | ---: |"]
    for name, s in report["files"].items():
        rows.append(f"| {name} | {s['mb']:.3f} | {s['pct_dense_fp32']:.1f} |")
    ref = report["sparse_checkpoint"]
    rows.append(f"| (reference) this project's sparse checkpoint | {ref['mb']:.3f} | {ref['pct_dense_fp32']:.1f} |")
    return rows


def _parity_rows(parity: dict) -> list[str]:
    rows = ["| runtime | accuracy | max abs logit diff vs torch | top-1 agreement |", "| --- | ---: | ---: | ---: |",
            f"| torch (reference) | {parity['torch']['accuracy']:.4f} | - | - |"]
    for name, r in parity.items():
        if isinstance(r, dict) and "top1_agreement" in r:
            rows.append(f"| {name} | {r['accuracy']:.4f} | {r['max_abs_logit_diff']:.3g} | {r['top1_agreement']:.4f} |")
    return rows


def _latency_rows(latency: dict) -> list[str]:
    rows = [f"| model | runtime | batch | p50 ms | p95 ms | {latency['reference']} p50 / p50 |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    ratios = latency["ratio_to_dense"]
    for model, by_runtime in latency["table"].items():
        for runtime, by_batch in by_runtime.items():
            for batch, t in by_batch.items():
                ratio = 1.0 if model == latency["reference"] else ratios[model][runtime][batch]
                rows.append(f"| {model} | {runtime} | {batch.split()[-1]} | {t['p50_ms']:.3f} | {t['p95_ms']:.3f} "
                            f"| {ratio:.2f}x |")
    return rows


def _int8_section(report: dict) -> list[str]:
    """int8's own rows: size, val and test accuracy, top-1 agreement with fp32 (both on ONNX Runtime)."""
    int8 = report.get("int8")
    if not int8:
        return []
    gate, calibration = int8["gate"], int8["calibration"]
    rows = [f"## int8 ({int8['file']}): gate {'passed' if gate['passed'] else 'FAILED'}, {gate['note']}", "",
            f"{int8['format']}; calibrated on {calibration['images']} images of the run's {calibration['split']} "
            "split (the part training used), never val or test. "
            f"Allowed drop of {gate['split']} accuracy below fp32: {gate['max_drop']:g}; measured: {gate['drop']:.4f}.",
            "",
            "| model | MB | % of model.onnx | split | images | accuracy | top-1 agreement with fp32 | "
            "max abs logit diff |", "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for split in ("val", "test"):
        if split in int8:
            r = int8[split]
            rows.append(f"| fp32 (model.onnx) | {int8['fp32_bytes'] / MB:.3f} | 100.0 | {split} | {r['images']} | "
                        f"{r['fp32_accuracy']:.4f} | - | - |")
            rows.append(f"| int8 ({int8['file']}) | {int8['bytes'] / MB:.3f} | {int8['pct_model_onnx']:.1f} | {split} "
                        f"| {r['images']} | {r['int8_accuracy']:.4f} | {r['top1_agreement']:.4f} "
                        f"| {r['max_abs_logit_diff']:.3g} |")
    return [*rows, ""]


def _slim_lines(report: dict) -> list[str]:
    """The dense and the slim network side by side, and the slim one's parity with the masked one."""
    slim, counts = report.get("slim"), report["counts"]
    if not slim:
        return []
    lines = [f"- dense network: {counts['params_total']:,} parameters, {counts['macs_total']:,} MACs; slim network "
             f"(model.onnx): {slim['params']:,} parameters ({slim['params'] / counts['params_total']:.2%}), "
             f"{slim['macs']:,} MACs ({slim['macs'] / counts['macs_total']:.2%})", f"- {slim['note']}"]
    if slim["vs_masked"]:
        check = slim["vs_masked"]
        lines.append(f"- slim against masked (torch, whole test split): max abs logit difference "
                     f"{check['max_abs_logit_diff']:.3g} (allowed {check['allowed']:.3g}), top-1 agreement "
                     f"{check['top1_agreement']:.4f}: {'passed' if check['passed'] else 'FAILED'}")
    return lines


def markdown(report: dict) -> str:
    src, counts, parity, latency = report["source"], report["counts"], report["parity"], report["latency"]
    contract = report["input"]
    lines = [f"# Export of {src['model']} ({src['method']}, density {counts['density']:.4f}) on {src['dataset']}", "",
             f"Input: `{contract['name']}` float32 {contract['shape']}, values 0..255 (the uint8 pixels); "
             "normalisation is inside the graph. Output: `logits` (batch, classes).", "",
             "## Size", f"Dense fp32 reference: {report['dense_fp32_bytes'] / MB:.3f} MB.", "", *_size_rows(report), "",
             "## Parity (whole test split, "
             f"{parity['test_images']} images; allowed max abs diff {parity['atol']:g}, top-1 agreement 1): "
             f"{'passed' if parity['passed'] else 'FAILED'}", "", *_parity_rows(parity), "",
             *_int8_section(report),
             f"## Latency ({latency['threads']} thread(s), {latency['runs']} timed runs each, in interleaved rounds)",
             "", cpu_line(latency["cpu"]), "", *_latency_rows(latency), "",
             *[f"- {name}: {what}" for name, what in latency["models"].items()], "", latency["verdict"], "",
             "## Parameters and MACs (per image, Conv2d and Linear)", "",
             f"- parameters: {counts['params_nonzero']:,} non-zero of {counts['params_total']:,}",
             f"- MACs: {counts['macs_nonzero']:,} non-zero of {counts['macs_total']:,} "
             f"({counts['macs_nonzero'] / counts['macs_total']:.2%})", *_slim_lines(report), "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}", ""]
    return "\n".join(lines)
