"""Counting what a pruned network really keeps."""

from __future__ import annotations

from torch import nn


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Conv2d and Linear weights by parameter name: the only tensors any method prunes."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def sparsity_report(model: nn.Module) -> dict:
    """Density over prunable weights (the headline number) and over all parameters."""
    prunable = prunable_weights(model)
    layer_counts = {name: (int(w.count_nonzero()), w.numel()) for name, w in prunable.items()}
    params_total = sum(p.numel() for p in model.parameters())
    params_prunable = sum(n for _, n in layer_counts.values())
    params_nonzero = sum(nz for nz, _ in layer_counts.values())
    other_nonzero = sum(int(p.count_nonzero()) for name, p in model.named_parameters() if name not in prunable)
    density = params_nonzero / params_prunable
    return {
        "params_total": params_total,
        "params_prunable": params_prunable,
        "params_nonzero": params_nonzero,
        "density": density,
        "density_total": (params_nonzero + other_nonzero) / params_total,
        "compression_ratio": 1.0 / density if density > 0 else float("inf"),
        "layer_densities": {name: nz / n for name, (nz, n) in layer_counts.items()},
    }
