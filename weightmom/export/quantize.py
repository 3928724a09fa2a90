"""model.int8.onnx: ONNX Runtime static quantization of model.onnx, calibrated on training images, gated on accuracy.

QDQ format with per-channel int8 weights and uint8 activations: the format ONNX Runtime's CPU kernels fuse into
integer convolutions. Activation ranges come from N images of the part of the training data that training used,
never val or test, so the gate below measures int8 on images it was not tuned on. The gate compares int8 with
fp32 on val (the split every other choice is made on); a run trained with val_fraction 0 has none, and is gated
on test instead, which the report and the CLI say.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from weightmom.export.options import Int8Failed
from weightmom.export.parity import logits_of
from weightmom.export.runtimes import Runner

INT8 = "model.int8.onnx"
CALIBRATION_SEED = 0       # which training images calibrate: fixed, so an export is reproducible
CALIBRATION_BATCH = 32
GATE_EPS = 1e-9            # accuracies are k/n: a drop equal to the limit must pass despite float rounding


def calibration_images(train_images: np.ndarray, n: int) -> np.ndarray:
    """`n` training images drawn without replacement by a fixed seed (all of them when there are fewer)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    index = np.sort(rng.choice(len(train_images), size=min(n, len(train_images)), replace=False))
    return train_images[index].astype(np.float32)   # the graph takes the uint8 pixels as float32


def _reader(images: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images[i:i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Batches()


def quantize(fp32: Path, out: Path, images: np.ndarray, input_name: str = "input") -> None:
    """Write `out`, the int8 version of ONNX file `fp32`; scratch files live in a temporary folder beside `out`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8-") as scratch:
        # Shape inference and graph optimisation first, as ORT recommends for static quantization.
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared))
        except Exception:  # a graph the pre-processor cannot handle is still quantized, as exported
            prepared = fp32
        try:
            quantize_static(str(prepared), str(Path(scratch) / INT8), _reader(images, input_name),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
        except Exception as err:  # an operator ORT cannot quantize: the model's failure, one line
            raise Int8Failed(f"int8: ONNX Runtime cannot quantize model.onnx: "
                             f"{' '.join(f'{type(err).__name__}: {err}'.split())}"[:400]) from None
        (Path(scratch) / INT8).replace(out)


def _compare(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray) -> dict:
    return {"images": int(len(labels)), "fp32_accuracy": float((fp32.argmax(1) == labels).mean()),
            "int8_accuracy": float((int8.argmax(1) == labels).mean()),
            "top1_agreement": float((fp32.argmax(1) == int8.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(fp32 - int8).max())}


def int8_report(fp32: Runner, int8: Runner, splits: dict[str, tuple[np.ndarray, np.ndarray] | None],
                max_drop: float, calibration: int) -> dict:
    """Accuracy of fp32 and int8 (both ONNX Runtime) on val and test, and the gate's decision.

    `splits`: {"val": (images, labels) or None, "test": (images, labels)}.
    """
    measured = {name: _compare(logits_of(fp32, images), logits_of(int8, images), labels)
                for name, split in splits.items() if split is not None for images, labels in [split]}
    gate_split = "val" if "val" in measured else "test"
    drop = measured[gate_split]["fp32_accuracy"] - measured[gate_split]["int8_accuracy"]
    note = ("gated on val" if gate_split == "val" else
            "gated on test: the run has no val split (val_fraction 0), so no held-out training data to gate on")
    return {**measured, "calibration": {"images": calibration, "split": "train", "seed": CALIBRATION_SEED},
            "format": "QDQ, per-channel int8 weights, uint8 activations (onnxruntime.quantization.quantize_static)",
            "gate": {"split": gate_split, "drop": drop, "max_drop": max_drop,
                     "passed": drop <= max_drop + GATE_EPS, "note": note}}


def check_gate(report: dict) -> None:
    gate = report["gate"]
    if gate["passed"]:
        return
    split = report[gate["split"]]
    raise Int8Failed(f"int8 gate failed: {gate['split']} accuracy {split['int8_accuracy']:.4f} is "
                         f"{gate['drop']:.4f} below fp32's {split['fp32_accuracy']:.4f} (allowed "
                         f"{gate['max_drop']:g}); nothing written (export without --int8 for fp32 alone)")
