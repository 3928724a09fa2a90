"""Parity on the whole test split: does each exported artefact compute what the torch model computes?"""

from __future__ import annotations

import numpy as np

from weightmom.export.options import ParityFailed
from weightmom.export.runtimes import Runner


def logits_of(run: Runner, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([run(images[i:i + batch].astype(np.float32)) for i in range(0, len(images), batch)])


def compare(reference: np.ndarray, other: np.ndarray, labels: np.ndarray) -> dict:
    return {"max_abs_logit_diff": float(np.abs(reference - other).max()),
            "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()),
            "accuracy": float((other.argmax(1) == labels).mean())}


def parity_report(runners: dict[str, Runner], images: np.ndarray, labels: np.ndarray, atol: float) -> dict:
    """`runners["torch"]` is the reference; every other runner must agree on top-1 everywhere and within atol."""
    reference = logits_of(runners["torch"], images)
    report = {"test_images": int(len(images)), "atol": atol,
              "torch": {"accuracy": float((reference.argmax(1) == labels).mean())}}
    for name, run in runners.items():
        if name != "torch":
            report[name] = compare(reference, logits_of(run, images), labels)
    report["passed"] = all(r["max_abs_logit_diff"] <= atol and r["top1_agreement"] == 1.0
                           for name, r in report.items() if name in runners and name != "torch")
    return report


def check_parity(report: dict) -> None:
    if report["passed"]:
        return
    worst = max((r for k, r in report.items() if isinstance(r, dict) and "top1_agreement" in r),
                key=lambda r: r["max_abs_logit_diff"])
    name = next(k for k, r in report.items() if r is worst)
    raise ParityFailed(f"parity failed: {name} differs from torch by up to {worst['max_abs_logit_diff']:.3g} "
                       f"in a logit (allowed {report['atol']:g}), top-1 agreement {worst['top1_agreement']:.4f} "
                       f"on {report['test_images']} test images")
