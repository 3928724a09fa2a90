"""Check a `weightmom export` folder with nothing of this project: only onnxruntime, torch, numpy (and zstandard).

    python benchmarks/verify_export.py DIR

ONNX Runtime on model.onnx and torch.export.load(model.pt2) must each reproduce report.json's test accuracy
exactly on samples/test_split.npz and samples/samples.npz's logits within 1e-4; the weights file must hold the
exported program's weights. Prints one line per check; exit 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

TOLERANCE = 1e-4
DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "U8": np.uint8, "BOOL": np.bool_}


def batches(run, images: np.ndarray, size: int = 256) -> np.ndarray:
    return np.concatenate([run(images[i:i + size].astype(np.float32)) for i in range(0, len(images), size)])


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """safetensors bytes under zstd, parsed by hand: 8-byte header length, JSON header, raw tensors."""
    import zstandard

    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__", None)
    body = raw[8 + length:]
    return {name: np.frombuffer(body[slice(*info["data_offsets"])], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
            for name, info in header.items()}


def check(name: str, run, folder: Path, report: dict) -> list[str]:
    test = np.load(folder / "samples" / "test_split.npz")
    samples = np.load(folder / "samples" / "samples.npz")
    accuracy = float((batches(run, test["images"]).argmax(1) == test["labels"]).mean())
    diff = float(np.abs(run(samples["inputs"]) - samples["logits"]).max())
    print(f"{name}: test accuracy {accuracy:.4f} (report {report['test_accuracy']:.4f}), "
          f"sample logits max diff {diff:.2g}")
    return ([f"{name} accuracy {accuracy} != {report['test_accuracy']}"] if accuracy != report["test_accuracy"]
            else []) + ([f"{name} sample logits differ by {diff}"] if not diff <= TOLERANCE else [])


def main(folder: Path) -> int:
    report = json.loads((folder / "report.json").read_text())
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    failures = check("onnxruntime", lambda x: session.run(None, {name: x})[0], folder, report)
    program = torch.export.load(str(folder / "model.pt2"))
    module = program.module()
    with torch.inference_mode():
        failures += check("torch.export", lambda x: module(torch.from_numpy(x)).numpy(), folder, report)
    weights = read_weights(folder / "weights.safetensors.zst")
    exported = {k.removeprefix("model."): v.detach().numpy() for k, v in program.state_dict.items()}
    exported |= {k.removeprefix("model."): v.detach().numpy() for k, v in program.constants.items()
                 if isinstance(v, torch.Tensor)}
    same = [k for k, v in weights.items() if k in exported and np.array_equal(exported[k], v)]
    floats = [k for k, v in weights.items() if v.dtype.kind == "f"]
    print(f"weights: {len(same)} of {len(floats)} float tensors equal the exported program's")
    failures += [f"weight {k} differs from model.pt2" for k in floats if k not in same]
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: verify_export.py DIR")
    sys.exit(main(Path(sys.argv[1])))
