"""model.onnx (dynamo exporter, dense initializers) and model.pt2 (torch.export), both with a free batch dimension."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

INPUT, OUTPUT = "input", "logits"


def _example(input_shape: tuple[int, ...]) -> tuple[torch.Tensor]:
    # Batch 2, not 1: torch.export specialises a size-1 dimension to the constant 1.
    return (torch.rand(2, *input_shape) * 255,)


def _batch_dims() -> tuple[dict]:
    return ({0: torch.export.Dim("batch", min=1, max=65536)},)


def export_program(model: nn.Module, input_shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), _example(input_shape), dynamic_shapes=_batch_dims())


def onnx_proto(model: nn.Module, input_shape: tuple[int, ...], opset: int | None = None):
    """The ONNX ModelProto; the dynamo exporter turns the ExportedProgram into ONNX, weights as dense initializers."""
    kwargs = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), _example(input_shape), dynamo=True, dynamic_shapes=_batch_dims(),
                                    input_names=[INPUT], output_names=[OUTPUT], optimize=True, verbose=False,
                                    **kwargs)
    return program.model_proto


def opset_of(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def write_onnx(proto, path: Path) -> None:
    import onnx

    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))


def write_pt2(program: torch.export.ExportedProgram, path: Path) -> None:
    torch.export.save(program, str(path))
