"""Where a run's data comes from: a built-in dataset, a folder of images, or the user's own loader.

`dataset: package.module:loader` names a function returning `(train, test, num_classes)` (or a
TensorDataset); `train(config, data=...)` takes the same objects directly. A split is either
`(images, labels)` (tensors or arrays; images uint8 (N, C, H, W) or (N, H, W), or floats in [0, 1])
or a torch Dataset of `(image, label)` pairs (PIL images, or tensors as above). Everything ends as
the uint8 TensorDataset the training loop batches on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from weightmom.data.datasets import DATASETS, TensorDataset, _make_dataset, load_dataset
from weightmom.errors import UsageError, require
from weightmom.imports import check_call, is_import_path, resolve, takes_keyword

IMAGEFOLDER = "imagefolder"
DATASET_NAMES = (*DATASETS, IMAGEFOLDER)

Loader = Callable[[], TensorDataset]


def check_dataset_name(name: str) -> None:
    require(name in DATASET_NAMES or is_import_path(name),
            f"unknown dataset {name!r}; choose from: {', '.join(DATASET_NAMES)}, or package.module:loader")


# What a built-in dataset's images look like, known without reading them: a check that needs the input (can a
# model's channels be grouped?) runs before any data loads.
KNOWN_INPUTS: dict[str, tuple[tuple[int, ...], int]] = {"digits": ((1, 8, 8), 10), "cifar10": ((3, 32, 32), 10),
                                                        "cifar100": ((3, 32, 32), 100)}


def data_loader(name: str, data_dir: str | None = None, image_size: int = 32, loading: str = "auto",
                device: torch.device | None = None, workers: int | None = None) -> Loader:
    """Resolve the dataset now and load it later: a bad name or loader fails before anything is read.

    A `data_dir` URI (s3://, file://...) is copied to this node once, when loading (weightmom.data.node_copy).
    An ImageFolder is streamed or held as `loading` says (weightmom.data.imagefolder.open_imagefolder).
    """
    from weightmom.data.node_copy import local_data_dir

    if name == IMAGEFOLDER:
        from weightmom.data.imagefolder import open_imagefolder

        require(data_dir is not None, "dataset imagefolder needs data_dir: a folder with train/ and test/ "
                                      "holding one subfolder per class")
        return lambda: open_imagefolder(local_data_dir(data_dir), image_size, loading, device, workers)
    if not is_import_path(name):
        check_dataset_name(name)
        return lambda: load_dataset(name, data_dir=None if data_dir is None else local_data_dir(data_dir))
    loader = resolve(name, "dataset")
    if data_dir is not None:
        require(takes_keyword(loader, "data_dir"), f"dataset {name!r}: data_dir is set but the loader takes no "
                                                   "data_dir argument")
        kwargs = {"data_dir": data_dir}
    else:
        kwargs = {}
    check_call(loader, f"dataset {name!r} cannot be called as loader({', '.join(kwargs)})", 0, kwargs)
    return lambda: as_tensor_dataset(loader(**kwargs), name, image_size)


def load_data(name: str, data_dir: str | None = None, image_size: int = 32,
              device: str | torch.device = "cpu") -> TensorDataset:
    return data_loader(name, data_dir, image_size)().to(device)


def as_tensor_dataset(data: Any, name: str, image_size: int = 32) -> TensorDataset:
    """A TensorDataset as is, or `(train, test, num_classes)` converted."""
    if isinstance(data, TensorDataset):
        return data
    if not (isinstance(data, Sequence) and len(data) == 3 and isinstance(data[2], int)):
        raise UsageError(f"dataset {name!r}: expected (train, test, num_classes) or a TensorDataset, "
                         f"got {type(data).__name__}")
    train, test, num_classes = data
    require(num_classes >= 1, f"dataset {name!r}: num_classes must be at least 1, got {num_classes}")
    splits = {"train": _split(train, f"{name} train", image_size), "test": _split(test, f"{name} test", image_size)}
    for split, (images, labels) in splits.items():
        require(images.shape[1:] == splits["train"][0].shape[1:],
                f"dataset {name!r}: {split} images are {tuple(images.shape[1:])}, "
                f"train images {tuple(splits['train'][0].shape[1:])}")
        bad = labels[(labels < 0) | (labels >= num_classes)]
        require(bad.size == 0, f"dataset {name!r}: {split} label {bad[:1].tolist()} outside 0..{num_classes - 1}")
    return _make_dataset(name, splits["train"], splits["test"], num_classes, augment=False)


def _split(split: Any, what: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One split as uint8 (N, C, H, W) images and int64 labels."""
    if isinstance(split, torch.utils.data.Dataset):
        items = [split[i] for i in range(len(split))]
        require(bool(items), f"dataset {what}: no samples")
        images = np.stack([_image(x, what, image_size) for x, _ in items])
        return images, np.array([int(y) for _, y in items], dtype=np.int64)
    if not (isinstance(split, Sequence) and len(split) == 2):
        raise UsageError(f"dataset {what}: expected (images, labels) or a torch Dataset, got {type(split).__name__}")
    images = _images(np.asarray(split[0].cpu() if torch.is_tensor(split[0]) else split[0]), what)
    labels = np.asarray(split[1].cpu() if torch.is_tensor(split[1]) else split[1])
    require(labels.shape == images.shape[:1] and np.issubdtype(labels.dtype, np.integer),
            f"dataset {what}: expected {images.shape[0]} integer labels, got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)


def _images(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 (N, C, H, W): a missing channel axis is added, [0, 1] floats are scaled to 0..255."""
    if array.ndim == 3:
        array = array[:, None]
    require(array.ndim == 4 and array.shape[0] > 0,
            f"dataset {what}: expected images (N, C, H, W) or (N, H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    require(np.issubdtype(array.dtype, np.floating) and 0 <= array.min() and array.max() <= 1,
            f"dataset {what}: images must be uint8, or floats in [0, 1]; got {array.dtype} "
            f"in [{array.min()}, {array.max()}]")
    return np.round(array * 255).astype(np.uint8)


def _image(x: Any, what: str, image_size: int) -> np.ndarray:
    """One Dataset item: a PIL image (resized like an ImageFolder's) or a (C, H, W) tensor."""
    from PIL import Image

    if isinstance(x, Image.Image):
        from weightmom.data.images import to_uint8

        return to_uint8(x, image_size)
    array = np.asarray(x.cpu() if torch.is_tensor(x) else x)
    return _images(array[None], what)[0]
