"""Counting what a pruned network really keeps.

Weights a method adds (N2NSkip's skip connections) count as non-zeros but not
in the size they are measured against: `density` is always over the network as
built, so every method at density D keeps the same number of non-zero weights.
"""

from __future__ import annotations

from torch import nn

from weightmom.skips import skip_connections


def _layer_weights(model: nn.Module) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """Conv2d/Linear weights by parameter name: (the network's own, those of added skip connections)."""
    added_modules = {id(m) for skip in skip_connections(model) for m in skip.modules()}
    own, added = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            (added if id(module) in added_modules else own)[f"{name}.weight"] = module.weight
    return own, added


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The network's own Conv2d and Linear weights: the size every density is measured against."""
    return _layer_weights(model)[0]


def sparsity_report(model: nn.Module) -> dict:
    """Density over prunable weights (the headline number) and over all parameters.

    `params_total` and `params_prunable` count the network as built; `params_skip` is the dense size of any
    added skip connections, whose non-zeros are in `params_nonzero` (and so in `density`).
    """
    own, added = _layer_weights(model)
    layer_counts = {name: (int(w.count_nonzero()), w.numel()) for name, w in {**own, **added}.items()}
    params_skip = sum(w.numel() for w in added.values())
    params_total = sum(p.numel() for p in model.parameters()) - params_skip
    params_prunable = sum(w.numel() for w in own.values())
    params_nonzero = sum(nz for nz, _ in layer_counts.values())
    counted = {id(w) for w in [*own.values(), *added.values()]}
    other_nonzero = sum(int(p.count_nonzero()) for p in model.parameters() if id(p) not in counted)
    density = params_nonzero / params_prunable
    return {
        "params_total": params_total,
        "params_prunable": params_prunable,
        "params_nonzero": params_nonzero,
        "params_skip": params_skip,
        "skips": len(skip_connections(model)),
        "density": density,
        "density_total": (params_nonzero + other_nonzero) / params_total,
        "compression_ratio": 1.0 / density if density > 0 else float("inf"),
        "layer_densities": {name: nz / n for name, (nz, n) in layer_counts.items()},
    }
