"""The graph that ships: normalisation inside, so a client feeds plain pixel values."""

from __future__ import annotations

import torch
from torch import nn


class Normalized(nn.Module):
    """`model((x - mean) / std)`, x float32 pixel values 0..255 in (N, C, H, W), as the training data's uint8."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().float().cpu().view(1, -1, 1, 1).clone())
        self.register_buffer("std", std.detach().float().cpu().view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
