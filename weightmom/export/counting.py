"""Parameters and multiply-accumulates, non-zero and total, of one forward pass on one image."""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Conv2d/Linear MACs per image: all weights, and the non-zero ones (what a sparse kernel would have to do)."""
    totals = {"macs_total": 0, "macs_nonzero": 0}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
        rows = output.numel() // channels   # output positions each weight is used at
        totals["macs_total"] += rows * module.weight.numel()
        totals["macs_nonzero"] += rows * int(module.weight.count_nonzero())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return totals


def count_params(model: nn.Module) -> dict:
    params = list(model.parameters())
    return {"params_total": sum(p.numel() for p in params),
            "params_nonzero": sum(int(p.count_nonzero()) for p in params)}
