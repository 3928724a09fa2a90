"""Check a `weightmom export` folder with nothing of this project: only onnxruntime, torch, numpy (and zstandard).

    python benchmarks/verify_export.py DIR

ONNX Runtime on model.onnx and torch.export.load(model.pt2) must each reproduce report.json's test accuracy
exactly on samples/test_split.npz and samples/samples.npz's logits within 1e-4; the weights file must hold the
exported program's weights (the masked weights cut to the slim graph's channels). When the folder has
model.int8.onnx (`export --int8`), ONNX Runtime on it must give report.json's int8 test accuracy exactly (its
logits are int8's, so they are not held to the fp32 samples).
Prints one line per check; exit 0 when all pass, 1 otherwise.
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
    """safetensors bytes under zstd, parsed by hand: 8-byte header length, JSON header, raw tensors; each tensor
    then cut to the channels the slim graph kept (metadata `slim_kept`: {name: {dim: positions}}; none when the
    export removed no channel), so the result is what model.onnx and model.pt2 hold."""
    import zstandard

    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__", None) or {}
    body = raw[8 + length:]
    weights = {name: np.frombuffer(body[slice(*info["data_offsets"])], dtype=DTYPES[info["dtype"]])
               .reshape(info["shape"]) for name, info in header.items()}
    for name, dims in json.loads(metadata.get("slim_kept", "{}")).items():
        for dim, positions in dims.items():
            weights[name] = np.take(weights[name], positions, axis=int(dim))
    return weights


def check(name: str, run, folder: Path, report: dict) -> list[str]:
    test = np.load(folder / "samples" / "test_split.npz")
    samples = np.load(folder / "samples" / "samples.npz")
    accuracy = float((batches(run, test["images"]).argmax(1) == test["labels"]).mean())
    diff = float(np.abs(run(samples["inputs"]) - samples["logits"]).max())
    print(f"{name}: test accuracy {accuracy:.4f} (report {report['test_accuracy']:.4f}), "
          f"sample logits max diff {diff:.2g}")
    return ([f"{name} accuracy {accuracy} != {report['test_accuracy']}"] if accuracy != report["test_accuracy"]
            else []) + ([f"{name} sample logits differ by {diff}"] if not diff <= TOLERANCE else [])


def ort_run(path: Path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def check_int8(folder: Path, report: dict) -> list[str]:
    """model.int8.onnx's accuracy on the whole test split must be the one report.json gives."""
    path = folder / "model.int8.onnx"
    if "int8" not in report and not path.exists():
        return []
    if "int8" not in report or not path.exists():
        return ["model.int8.onnx and report.json's int8 section must come together"]
    test = np.load(folder / "samples" / "test_split.npz")
    accuracy = float((batches(ort_run(path), test["images"]).argmax(1) == test["labels"]).mean())
    expected = report["int8"]["test"]["int8_accuracy"]
    print(f"onnxruntime int8: test accuracy {accuracy:.4f} (report {expected:.4f})")
    return [f"int8 accuracy {accuracy} != {expected}"] if accuracy != expected else []


def main(folder: Path) -> int:
    report = json.loads((folder / "report.json").read_text())
    failures = check("onnxruntime", ort_run(folder / "model.onnx"), folder, report)
    failures += check_int8(folder, report)
    program = torch.export.load(str(folder / "model.pt2"))
    module = program.module()
    with torch.inference_mode():
        failures += check("torch.export", lambda x: module(torch.from_numpy(x)).numpy(), folder, report)
    weights = read_weights(folder / "weights.safetensors.zst")
    exported = {k.removeprefix("model."): v.detach().numpy() for k, v in program.state_dict.items()}
    exported |= {k.removeprefix("model."): v.detach().numpy() for k, v in program.constants.items()
                 if isinstance(v, torch.Tensor)}
    floats = [k for k, v in weights.items() if v.dtype.kind == "f"]
    same = [k for k in floats if k in exported and np.array_equal(exported[k], weights[k])]   # floats only
    print(f"weights: {len(same)} of {len(floats)} float tensors equal the exported program's")
    failures += [f"weight {k} differs from model.pt2" for k in floats if k not in same]
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: verify_export.py DIR")
    sys.exit(main(Path(sys.argv[1])))
