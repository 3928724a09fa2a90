"""Slimming: a masked network turned into a smaller dense one, the channels nobody reads removed.

Masks only zero; speed comes from removing. Which channels go is a deterministic function of the model's
weights (weightmom.pruning.channels: a channel of a verified group whose every consumer's input slice is
exactly zero), so a checkpoint needs no pruning history: build the dense model, load the masked weights,
slim. Removal is exact: no layer reads what is removed, so no constant needs folding into the next layer.
Channel granularity zeroes every group's rows, BatchNorm scale and shift and input slices together; weight
granularity gets its dead channels removed for free.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from weightmom.checkpoint import Checkpoint
from weightmom.pruning.base import prunable_layers
from weightmom.pruning.channels import ChannelGroups, find_channel_groups, probe_input, remove_channels


def channel_groups(model: nn.Module, sample_input: torch.Tensor) -> ChannelGroups:
    """The verified channel groups of `model` (its Conv2d/Linear weights found by one forward pass)."""
    return find_channel_groups(model, sample_input, [layer.name for layer in prunable_layers(model, sample_input)])


def slim_model(model: nn.Module, sample_input: torch.Tensor, groups: ChannelGroups | None = None) -> nn.Module:
    """A copy of `model` with every removable channel removed (`model` is left as it is).

    `sample_input` gives the input's shape (one image is enough). `groups` saves finding them again when
    the caller has them (a pruner's `channels`). A model that cannot be grouped comes back as a plain copy.
    """
    groups = groups if groups is not None else channel_groups(model, sample_input)
    slim = copy.deepcopy(model)
    if groups.groups:
        remove_channels(slim, probe_input(sample_input), groups.groups, groups.removable())
    return slim


def slim_from_checkpoint(checkpoint: Checkpoint, model: nn.Module | None = None) -> nn.Module:
    """The slim network of a checkpoint (weightmom.checkpoint.load_checkpoint), in eval mode: the dense model
    rebuilt and loaded as `Checkpoint.build_model(model)` does, then slimmed."""
    dense = checkpoint.build_model(model).eval()
    return slim_model(dense, torch.zeros(1, *checkpoint.input_shape)).eval()


def max_logit_difference(a: nn.Module, b: nn.Module, inputs: torch.Tensor) -> float:
    """The largest |logit difference| of two models on `inputs`, both in eval mode: slim against masked."""
    modes = a.training, b.training
    a.eval(), b.eval()
    try:
        with torch.no_grad():
            return float((a(inputs).float() - b(inputs).float()).abs().max())
    finally:
        a.train(modes[0]), b.train(modes[1])
