"""What an export starts from: the checkpoint, its model rebuilt, and the test split with its normalisation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from weightmom.checkpoint import Checkpoint, load_checkpoint
from weightmom.errors import UsageError, require


@dataclass
class Source:
    path: Path
    checkpoint: Checkpoint
    model: nn.Module              # the pruned model, pruned weights exactly zero
    dense: nn.Module              # the same architecture, freshly initialised: the latency baseline
    mean: torch.Tensor
    std: torch.Tensor
    test_images: np.ndarray       # uint8 (N, C, H, W)
    test_labels: np.ndarray       # int64 (N,)
    train_images: np.ndarray      # uint8: the part of the training data training used (val held out): calibration
    val_images: np.ndarray | None = None    # the run's validation split; None when val_fraction was 0
    val_labels: np.ndarray | None = None


def check_out_dir(out: Path) -> None:
    """Fail before the work: DIR is created by the final rename, so it must be absent (or an empty folder)."""
    parent = out.absolute().parent
    require(parent.is_dir(), f"--out {out}: directory {parent} does not exist")
    require(os.access(parent, os.W_OK), f"--out {out}: directory {parent} is not writable")
    require(not out.exists() or (out.is_dir() and not any(out.iterdir())),
            f"--out {out}: exists and is not an empty folder (choose a new one)")


def rebuild(checkpoint: Checkpoint, path: Path) -> tuple[nn.Module, nn.Module]:
    from weightmom.models import create_model

    try:
        model = checkpoint.build_model().eval()
        config = checkpoint.config
        dense = create_model(config["model"], checkpoint.input_shape, checkpoint.num_classes,
                             width=config["width"], model_args=config.get("model_args")).eval()
    except UsageError as err:
        raise UsageError(f"{path}: the model cannot be rebuilt: {err}") from None
    except Exception as err:  # a state_dict that does not fit, a factory that raises
        raise UsageError(f"{path}: the model cannot be rebuilt: {' '.join(f'{type(err).__name__}: {err}'.split())}"
                         [:400]) from None
    return model, dense


def load_source(path: str | Path, data_dir: str | None = None) -> Source:
    from weightmom.data.datasets import split_validation
    from weightmom.data.sources import data_loader

    path = Path(path)
    checkpoint = load_checkpoint(path)
    model, dense = rebuild(checkpoint, path)
    config = checkpoint.config
    dataset = data_loader(config["dataset"], data_dir or config.get("data_dir"), config.get("image_size", 32))()
    # The run's split decides the normalisation statistics, as in `weightmom evaluate`.
    dataset = split_validation(dataset, config.get("val_fraction", 0.0), config.get("split_seed", 0))
    require(tuple(dataset.input_shape) == tuple(checkpoint.input_shape),
            f"the data's images are {dataset.input_shape}, the checkpoint's model takes {checkpoint.input_shape}")
    require(checkpoint.class_names is None or dataset.class_names in (None, checkpoint.class_names),
            "the data's classes are not the checkpoint's")
    val = dataset.val_images is not None
    return Source(path, checkpoint, model, dense, dataset.mean.cpu(), dataset.std.cpu(),
                  dataset.test_images.cpu().numpy(), dataset.test_labels.cpu().numpy(),
                  dataset.train_images.cpu().numpy(),
                  dataset.val_images.cpu().numpy() if val else None, dataset.val_labels.cpu().numpy() if val else None)
