"""report.json (everything measured, machine-readable) and report.md (the same, for a person)."""

from __future__ import annotations

import platform
from pathlib import Path

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
    rows = ["| model | runtime | batch | p50 ms | p95 ms |", "| --- | --- | ---: | ---: | ---: |"]
    for model, by_runtime in latency["table"].items():
        for runtime, by_batch in by_runtime.items():
            for batch, t in by_batch.items():
                rows.append(f"| {model} | {runtime} | {batch.split()[-1]} | {t['p50_ms']:.3f} | {t['p95_ms']:.3f} |")
    return rows


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
             f"## Latency ({latency['threads']} thread(s), {latency['runs']} timed runs each)", "",
             *_latency_rows(latency), "", latency["verdict"], "",
             "## Parameters and MACs (per image, Conv2d and Linear)", "",
             f"- parameters: {counts['params_nonzero']:,} non-zero of {counts['params_total']:,}",
             f"- MACs: {counts['macs_nonzero']:,} non-zero of {counts['macs_total']:,} "
             f"({counts['macs_nonzero'] / counts['macs_total']:.2%})", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}", ""]
    return "\n".join(lines)
