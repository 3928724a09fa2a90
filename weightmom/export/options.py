"""What an export may be asked for, and the failures that are the model's, not the user's (exit 1, not 2)."""

from __future__ import annotations

from dataclasses import dataclass


class ExportFailed(RuntimeError):
    """The model fails a check the export makes: the input was fine, so the command exits 1 rather than 2."""


class ParityFailed(ExportFailed):
    """ONNX Runtime (or the reloaded ExportedProgram) does not compute what torch computes."""


class Int8Failed(ExportFailed):
    """ONNX Runtime cannot quantize the graph, or int8 loses more accuracy than allowed: no export ships."""


@dataclass(frozen=True)
class ExportOptions:
    data_dir: str | None = None      # override the dataset folder stored in the checkpoint
    threads: int = 1                 # intra-op threads for every latency measurement (ORT and torch alike)
    latency_runs: int = 30           # timed runs per (runtime, model, batch); p50/p95 over them
    latency_warmup: int = 3
    latency_batches: tuple[int, ...] = (1, 64)
    parity_atol: float = 1e-3        # max |logit_ort - logit_torch| allowed on the test split
    samples: int = 16                # test images in samples/samples.npz
    zstd_level: int = 19
    opset: int | None = None         # None: the exporter's default (checked against onnxruntime's range)
    int8: bool = False               # also write model.int8.onnx (ONNX Runtime static quantization, QDQ)
    int8_calibration: int = 256      # training images (never val or test) that set the activation ranges
    int8_max_drop: float = 0.01      # largest fp32 - int8 accuracy drop allowed on val (test when there is no val)


EXTRA = ("onnx", "onnxscript", "onnxruntime", "zstandard")


def check_dependencies() -> None:
    """The optional `export` extra, checked before any work, as one line rather than an ImportError later."""
    import importlib.util

    from weightmom.errors import require

    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    require(not missing, f"export needs {', '.join(missing)}: pip install 'weightmom-sweeps[export]'")
