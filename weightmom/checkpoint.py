"""Checkpoints that really shrink when the model is sparse.

A pruned weight is stored as a packed bitmask plus its surviving values, so at
density 5% a float32 layer takes about 5% * 4 + 1/8 bytes per weight instead of
4. The file is a plain dict of tensors and numbers, loadable with
`torch.load(path, weights_only=True)`, and `load_model` restores the dense model
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from weightmom.errors import UsageError
from weightmom.files import atomic_write
from weightmom.models import create_model
from weightmom.skips import SkipSpec, attach_skips, skip_specs

FORMAT = "weightmom-sparse/1"


def encode(tensor: torch.Tensor, mask: torch.Tensor | None) -> dict:
    """Dense as is, or {shape, bits, values} when a mask removes anything.

    Bits cost 1/8 byte a weight, so sparse storage wins below about 97% density.
    """
    tensor = tensor.detach().cpu().contiguous()
    if mask is None or bool(mask.all()):
        return {"dense": tensor}
    keep = mask.detach().cpu().bool().flatten()
    bits = torch.from_numpy(np.packbits(keep.numpy()))
    return {"shape": list(tensor.shape), "bits": bits, "values": tensor.flatten()[keep].clone()}


def decode(entry: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The dense tensor and, for sparse entries, the boolean mask it was stored with."""
    if "dense" in entry:
        return entry["dense"], None
    numel = int(np.prod(entry["shape"]))
    keep = torch.from_numpy(np.unpackbits(entry["bits"].numpy(), count=numel).astype(bool))
    dense = torch.zeros(numel, dtype=entry["values"].dtype)
    dense[keep] = entry["values"]
    return dense.view(entry["shape"]), keep.view(entry["shape"])


def atomic_save(obj: object, path: str | Path) -> None:
    """torch.save through a temporary file, so a crash never leaves half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(path: str | Path, model: nn.Module, masks: dict[str, torch.Tensor], *,
                    config: dict, input_shape: tuple[int, ...], num_classes: int, metrics: dict | None = None) -> None:
    """Write `model` with its masks sparsely, plus what is needed to rebuild and evaluate it.

    Skip connections a method added (N2NSkip) are described in the file, so it rebuilds without the run's config.
    """
    tensors = {name: encode(value, masks.get(name)) for name, value in model.state_dict().items()}
    scalars = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))}
    atomic_save({"format": FORMAT, "config": config, "input_shape": list(input_shape),
                 "num_classes": num_classes, "metrics": scalars, "tensors": tensors,
                 "skips": [spec.to_dict() for spec in skip_specs(model)]}, path)


@dataclass
class Checkpoint:
    config: dict
    input_shape: tuple[int, ...]
    num_classes: int
    metrics: dict
    state_dict: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    skips: list[SkipSpec] = field(default_factory=list)

    def build_model(self) -> nn.Module:
        """The dense model, with any skip connections, and the stored weights (pruned ones exactly zero)."""
        model = create_model(self.config["model"], self.input_shape, self.num_classes, width=self.config["width"])
        attach_skips(model, self.skips)
        model.load_state_dict(self.state_dict)
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise UsageError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{path}: not a weightmom checkpoint (expected format {FORMAT})")
    state, masks = {}, {}
    for name, entry in raw["tensors"].items():
        state[name], mask = decode(entry)
        if mask is not None:
            masks[name] = mask
    skips = [SkipSpec.from_dict(spec) for spec in raw.get("skips", [])]
    return Checkpoint(raw["config"], tuple(raw["input_shape"]), raw["num_classes"], raw["metrics"], state, masks,
                      skips)


def apply_masks_with_torch_prune(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Re-apply saved masks through torch.nn.utils.prune, for users of that API."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module_name, _, param = name.rpartition(".")
        prune.custom_from_mask(modules[module_name], param, mask.to(getattr(modules[module_name], param).device))
