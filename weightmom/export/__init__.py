"""`weightmom export`: a pruned checkpoint as files a serving stack loads, checked and measured.

Needs only torch, onnx/onnxscript, onnxruntime and zstandard (the `export` extra); no Ray, Optuna or MLflow.

    from weightmom.export import ExportOptions, export_checkpoint
    report = export_checkpoint("model.pt", "deploy/", ExportOptions(threads=1))

See docs/export.md for the files and the weights layout.
"""

from __future__ import annotations

from weightmom.export.options import ExportFailed, ExportOptions, Int8Failed, ParityFailed
from weightmom.export.pipeline import export_checkpoint

__all__ = ["ExportFailed", "ExportOptions", "Int8Failed", "ParityFailed", "export_checkpoint"]
