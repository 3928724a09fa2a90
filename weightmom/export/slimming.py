"""The slim network an export ships: the masked model with every removable channel removed (weightmom.slim).

A channel-pruned checkpoint loses its dead groups; a weight-granularity one loses the channels that ended dead;
when nothing can be removed the slim model is the masked one. `kept` says, for every tensor that shrank, which
positions along which dimension survive, so anyone can cut the masked weights (weights.safetensors.zst) down to
the slim graph's with numpy alone (benchmarks/verify_export.py does).
"""

from __future__ import annotations

import torch
from torch import nn

from weightmom.export.options import ParityFailed

SLIM_RTOL = 1e-4   # slim against masked logits, relative to the largest logit when that is above 1


def slim_of(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, dict[int, list[int]]]]:
    """(the slim copy of `model` in eval mode, {tensor name: {dim: kept positions}} for every tensor that shrank)."""
    from weightmom.slim import channel_groups, slim_model

    sample = torch.zeros(1, *input_shape)
    groups = channel_groups(model, sample)
    dead = groups.removable() if groups.groups else []
    if not any(bool(d.any()) for d in dead):
        return model, {}
    slim = slim_model(model, sample, groups).eval()
    removed: dict[tuple[str, int], set[int]] = {}
    for group, drop in zip(groups.groups, dead):
        for s in group.slices:
            removed.setdefault((s.name, s.dim), set()).update(s.index[drop[s.channel]].tolist())
    masked_state, slim_state = model.state_dict(), slim.state_dict()
    kept: dict[str, dict[int, list[int]]] = {}
    for name, tensor in masked_state.items():
        if tensor.shape == slim_state[name].shape:
            continue
        # A BatchNorm's running statistics shrink with its weight (they are buffers, in no group's slices).
        sources = {dim: gone for (param, dim), gone in removed.items()
                   if param == name or (param == f"{name.rpartition('.')[0]}.weight" and dim == 0
                                        and not name.endswith(("weight", "bias")))}
        kept[name] = {dim: sorted(set(range(tensor.shape[dim])) - gone) for dim, gone in sources.items() if gone}
    _check_kept(masked_state, slim_state, kept)
    return slim, kept


def cut(tensor: torch.Tensor, kept: dict[int, list[int]]) -> torch.Tensor:
    for dim, index in kept.items():
        tensor = tensor.index_select(int(dim), torch.tensor(index, dtype=torch.long))
    return tensor


def _check_kept(masked: dict, slim: dict, kept: dict) -> None:
    """The masked weights cut by `kept` must be the slim weights, exactly: what the verifier relies on."""
    wrong = [name for name, tensor in masked.items() if not torch.equal(cut(tensor, kept.get(name, {})), slim[name])]
    if wrong:
        raise ParityFailed(f"slimming: the slim model's {wrong[0]} is not the masked one's kept channels "
                           f"({len(wrong)} tensor(s))")


def check_slim(parity: dict, masked_logit_scale: float) -> dict:
    """Slim against masked (torch, whole test split) to SLIM_RTOL; report.json's `slim_vs_masked`; raises."""
    diff = parity["slim torch"]["max_abs_logit_diff"]
    allowed = SLIM_RTOL * max(1.0, masked_logit_scale)
    result = {"max_abs_logit_diff": diff, "allowed": allowed, "top1_agreement": parity["slim torch"]["top1_agreement"],
              "passed": diff <= allowed and parity["slim torch"]["top1_agreement"] == 1.0}
    if not result["passed"]:
        raise ParityFailed(f"parity failed: the slim model differs from the masked one by up to {diff:.3g} in a "
                           f"logit (allowed {allowed:.3g}) on {parity['test_images']} test images")
    return result
