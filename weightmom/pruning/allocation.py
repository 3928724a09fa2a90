"""How a global density is shared out among layers (method.md, step 3).

Every function returns per-layer *keep counts* (weights left alive), so the
caller can hit the global target to within one weight per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from weightmom.pruning.base import GlobalRanking


def water_fill(sizes: Sequence[int], scores: Sequence[float], density: float,
               fixed: Sequence[bool]) -> list[float]:
    """Densities d_l = min(1, c * score_l) whose weighted mean is `density`.

    Layers in `fixed` stay dense (d_l = 1); layers that would exceed 1 are capped
    and hand their share to the others, which is why this loops.
    """
    if density >= 1.0:  # everything stays: the loop below would cap every layer and find no budget left
        return [1.0] * len(sizes)
    total = float(sum(sizes))
    dense = [bool(f) for f in fixed]
    while True:
        budget = density * total - sum(s for s, d in zip(sizes, dense) if d)
        weighted = sum(s * sc for s, sc, d in zip(sizes, scores, dense) if not d)
        if budget <= 0 or weighted <= 0:
            raise ValueError(f"cannot reach density {density:.4g}: the layers kept dense already exceed it")
        scale = budget / weighted
        newly_capped = [not d and scale * sc >= 1.0 for sc, d in zip(scores, dense)]
        if not any(newly_capped):
            return [1.0 if d else scale * sc for sc, d in zip(scores, dense)]
        dense = [d or c for d, c in zip(dense, newly_capped)]


def importance_scores(sizes: Sequence[int], alpha: float) -> list[float]:
    """The paper's Eq. 1, I_l = W_l / (l * W_avg), turned into I_l ** -alpha."""
    mean_size = sum(sizes) / len(sizes)
    return [(size / (position * mean_size)) ** (-alpha) for position, size in enumerate(sizes, start=1)]


def erk_scores(shapes: Sequence[torch.Size]) -> list[float]:
    """Erdos-Renyi-Kernel (Evci et al. 2020): sum of dimensions over their product."""
    return [sum(shape) / float(torch.Size(shape).numel()) for shape in shapes]


def keep_counts(sizes: Sequence[int], densities: Sequence[float]) -> list[int]:
    """Round densities to whole weights; a layer keeps at least one so it still passes signal."""
    return [min(size, max(1, round(d * size))) for size, d in zip(sizes, densities)]


def global_keep_counts(scores: Sequence[torch.Tensor], alive: Sequence[torch.Tensor],
                       density: float, fixed: Sequence[bool]) -> list[int]:
    """One ranking of all alive weights, each layer's scores divided by their RMS."""
    sizes = [s.numel() for s in scores]
    budget = round(density * sum(sizes)) - sum(n for n, f in zip(sizes, fixed) if f)
    if budget <= 0:
        raise ValueError(f"cannot reach density {density:.4g}: the layers kept dense already exceed it")
    ranked = []   # dead weights and fixed layers rank last, at -1
    for score, mask, is_fixed in zip(scores, alive, fixed):
        alive_scores = score[mask]
        rms = alive_scores.pow(2).mean().sqrt().clamp_min(1e-12) if alive_scores.numel() else 1.0
        normalised = torch.where(mask, score / rms, torch.full_like(score, -1.0))
        ranked.append(torch.full_like(score, -1.0) if is_fixed else normalised)
    chosen = GlobalRanking.of(ranked).top_masks(min(budget, sum(sizes)))
    return [size if is_fixed else max(1, int(c.sum())) for size, c, is_fixed in zip(sizes, chosen, fixed)]


def rule_scores(allocation: str, sizes: Sequence[int], shapes: Sequence[torch.Size],
                importance_scaling: float) -> list[float]:
    """Each layer's (or group's) share of the kept weights under a water-filling rule: uniform, importance, erk."""
    if allocation == "uniform":
        return [1.0] * len(sizes)
    if allocation == "importance":
        return importance_scores(sizes, importance_scaling)
    if allocation == "erk":
        return erk_scores(shapes)
    raise ValueError(f"unknown allocation {allocation!r}")


def allocate(allocation: str, density: float, shapes: Sequence[torch.Size], fixed: Sequence[bool],
             importance_scaling: float = 1.0, scores: Sequence[torch.Tensor] | None = None,
             alive: Sequence[torch.Tensor] | None = None) -> list[int]:
    """Per-layer keep counts for a global `density` under the named allocation rule."""
    sizes = [torch.Size(s).numel() for s in shapes]
    if allocation == "global":
        assert scores is not None and alive is not None, "global allocation ranks scores"
        return global_keep_counts(scores, alive, density, fixed)
    layer_scores = rule_scores(allocation, sizes, shapes, importance_scaling)
    return keep_counts(sizes, water_fill(sizes, layer_scores, density, fixed))


def allocate_channels(allocation: str, density: float, channels: Sequence[int], sizes: Sequence[int],
                      shapes: Sequence[torch.Size], fixed: Sequence[bool], importance_scaling: float = 1.0,
                      scores: Sequence[torch.Tensor] | None = None,
                      alive: Sequence[torch.Tensor] | None = None) -> list[int]:
    """Per-group *channel* keep counts: the same rules, with channel groups in the place of layers.

    A group of `channels[g]` channels counts as a layer of `sizes[g]` prunable weights (its rows and its
    consumers' input slices), in the forward order of its root layer, whose weight shape `shapes[g]` is
    what `erk` reads. `global` ranks channel scores, each group's divided by their RMS. `density` here
    is a fraction of channels; the caller (ChannelGroups.keep_for_density) finds the one that keeps the
    target fraction of weights.
    """
    if allocation == "global":
        assert scores is not None and alive is not None, "global allocation ranks scores"
        counts = global_keep_counts(scores, alive, density, fixed)
        return [n if f else kept_channels(k, n) for n, k, f in zip(channels, counts, fixed)]
    densities = water_fill(sizes, rule_scores(allocation, sizes, shapes, importance_scaling), density, fixed)
    return [n if f else kept_channels(d * n, n) for n, d, f in zip(channels, densities, fixed)]


# CPU convolution kernels (ONNX Runtime's MLAS, oneDNN) work on blocks of 8 or 16 channels; a layer whose
# channel count is off a multiple of 8 takes a much slower path. Measured (ONNX Runtime, 1 thread, four 3x3
# convs at 8x8, batch 1): 127 channels 0.64 ms, 128 0.47, 120 0.47, 112 0.38. Blocks of 8 avoid the cliff and
# keep density close to its target (16 would land a VGG-16 x0.25 at 0.16 for a target of 0.2).
CHANNEL_BLOCK = 8


def kept_channels(wanted: float, n: int) -> int:
    """`wanted` channels of a group of `n` (at least one), rounded to a multiple of CHANNEL_BLOCK when the group
    is at least four whole blocks and a block or more is wanted: the slim layer keeps the fast kernels, and
    small groups and very sparse targets keep the precision a density needs."""
    if n % CHANNEL_BLOCK or n < 4 * CHANNEL_BLOCK or wanted < CHANNEL_BLOCK:
        return min(n, max(1, round(wanted)))
    return min(n, CHANNEL_BLOCK * round(wanted / CHANNEL_BLOCK))
