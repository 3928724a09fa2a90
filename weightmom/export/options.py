"""What an export may be asked for, and the one failure that is the model's, not the user's."""

from __future__ import annotations

from dataclasses import dataclass


class ParityFailed(RuntimeError):
    """ONNX Runtime (or the reloaded ExportedProgram) does not compute what torch computes."""


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


EXTRA = ("onnx", "onnxscript", "onnxruntime", "zstandard")


def check_dependencies() -> None:
    """The optional `export` extra, checked before any work, as one line rather than an ImportError later."""
    import importlib.util

    from weightmom.errors import require

    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    require(not missing, f"export needs {', '.join(missing)}: pip install 'weightmom-sweeps[export]'")
