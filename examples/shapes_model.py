"""A user's own model for WeightMom: any function `(input_shape, num_classes, **model_args) -> nn.Module`.

    weightmom train --dataset imagefolder --data-dir ../runs/shapes --model shapes_model:build \
        --set model_args.channels=24 --method weightmom --density 0.1    # run from examples/

Prunable weights are the Conv2d and Linear layers; everything else (BatchNorm, biases) stays dense.
"""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, int, int], num_classes: int, channels: int = 16, depth: int = 2) -> nn.Module:
    """`depth` conv-BN-ReLU-pool stages of `channels`, doubling each stage, then a linear classifier."""
    layers: list[nn.Module] = []
    in_channels = input_shape[0]
    for stage in range(depth):
        out_channels = channels * 2**stage
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
