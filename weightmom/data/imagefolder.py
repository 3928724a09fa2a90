"""A folder of images, one subfolder per class (torchvision's ImageFolder layout), as a TensorDataset.

    DATA_DIR/train/<class>/*.png     DATA_DIR/test/<class>/*.jpg     (DATA_DIR/val/<class>/... optional)

Every image is decoded once, converted to RGB, resized (shorter side to `image_size`, then a centre
crop) and kept as uint8, so the on-device batching and augmentation of weightmom.data.datasets apply
unchanged. Class indices follow the sorted folder names, as in torchvision. A `val/` folder is the
validation split as it is (no `val_fraction` is carved from train/ then). A bad folder fails before
any training, in one line that names the path. A folder that would not fit is streamed instead
(`data_loading`, weightmom.data.streaming); `open_imagefolder` makes that choice.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from weightmom.data.datasets import TensorDataset, _make_dataset
from weightmom.data.images import decode
from weightmom.data.streaming import StreamingDataset
from weightmom.errors import UsageError, require

# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")   # required; val/ is optional
# Decoded uint8 data beyond this share of the machine's memory is refused: the run would swap or
# be killed part-way through decoding. A smaller image_size is the way out.
MEMORY_SHARE = 0.5
MEMORY_CAP_ENV = "WEIGHTMOM_MEMORY_CAP_BYTES"

Samples = list[tuple[Path, int]]


def class_folders(split_dir: Path) -> list[str]:
    """The class names of one split: its visible subfolders, sorted."""
    require(split_dir.is_dir(), f"ImageFolder split missing: {split_dir} (expected train/ and test/ "
                                "with one subfolder per class)")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    require(bool(names), f"{split_dir}: no class folders (expected one subfolder per class)")
    return names


def scan_split(split_dir: Path, classes: list[str]) -> Samples:
    """(image path, label) for every image file, in class then file-name order."""
    found = class_folders(split_dir)
    if found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise UsageError(f"{split_dir}: class folders differ from train/'s"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; not in train/: {', '.join(extra)}" if extra else ""))
    samples: Samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))
        require(bool(files), f"{split_dir / name}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} files)")
        empty = next((p for p in files if p.stat().st_size == 0), None)   # cheap: found before any decode
        require(empty is None, f"{empty}: unreadable image (empty file)")
        samples += [(p, label) for p in files]
    return samples


def decode_all(samples: Samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode in threads (PIL releases the GIL while decoding and resizing)."""
    images = np.empty((len(samples), 3, size, size), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for i, array in enumerate(pool.map(lambda s: decode(s[0], size), samples)):
                images[i] = array
        except UsageError:
            pool.shutdown(cancel_futures=True)  # a bad file stops the decoding now, not after every other one
            raise
    return images, np.array([label for _, label in samples], dtype=np.int64)


def memory_cap(device: torch.device | None = None) -> tuple[int, str] | None:
    """The most decoded bytes held in memory, and whose memory that is; None when it cannot be told.

    MEMORY_SHARE of the machine's memory, and of the GPU's when training on CUDA (the whole set moves
    there). WEIGHTMOM_MEMORY_CAP_BYTES replaces it (tests force the streaming path with a small cap).
    """
    if os.environ.get(MEMORY_CAP_ENV):
        raw = os.environ[MEMORY_CAP_ENV]
        require(raw.isdigit(), f"{MEMORY_CAP_ENV} must be a number of bytes, got {raw!r}")
        return int(raw), f"{MEMORY_CAP_ENV}={raw}"
    try:
        caps = [(int(MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's")]
    except (ValueError, OSError, AttributeError):  # not every platform has these
        caps = []
    if device is not None and device.type == "cuda":
        caps.append((int(MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory), f"{device}'s"))
    if not caps:
        return None
    cap, whose = min(caps)
    return cap, f"{MEMORY_SHARE:.0%} of {whose} {cap / MEMORY_SHARE / 2**30:.1f} GiB"


def decoded_bytes(samples: dict[str, Samples], size: int) -> int:
    return sum(map(len, samples.values())) * 3 * size * size


def check_memory(root: Path, count: int, size: int, device: torch.device | None = None) -> None:
    need, cap = count * 3 * size * size, memory_cap(device)
    if cap is None:
        return
    require(need <= cap[0], f"{root}: {count} images at image_size {size} decode to {need / 2**30:.1f} GiB, more "
                            f"than {cap[1]}; use a smaller image_size, or data_loading stream")


def scan(root: Path) -> tuple[list[str], dict[str, Samples]]:
    """The class names and every split's files, checked (cheap: no image is decoded)."""
    require(root.is_dir(), f"data_dir does not exist or is not a directory: {root}")
    classes = class_folders(root / "train")
    splits = (*SPLITS, "val") if (root / "val").exists() else SPLITS
    return classes, {split: scan_split(root / split, classes) for split in splits}


def open_imagefolder(data_dir: str, image_size: int = 32, loading: str = "auto",
                     device: torch.device | None = None, workers: int | None = None):
    """The folder in memory (a TensorDataset) or streamed (a StreamingDataset), as `loading` says.

    auto streams when the decoded images would exceed memory_cap(device), else holds them.
    """
    root = Path(data_dir).expanduser()
    classes, samples = scan(root)
    cap = memory_cap(device)
    if loading == "stream" or (loading == "auto" and cap is not None and decoded_bytes(samples, image_size) > cap[0]):
        return StreamingDataset("imagefolder", samples, image_size, len(classes), tuple(classes), workers)
    return _decode_folder(root, classes, samples, image_size, device)


def load_imagefolder(data_dir: str, image_size: int = 32) -> TensorDataset:
    """Scan and check every split first (cheap), then decode: a bad folder never costs a decode."""
    root = Path(data_dir).expanduser()
    classes, samples = scan(root)
    return _decode_folder(root, classes, samples, image_size)


def _decode_folder(root: Path, classes: list[str], samples: dict[str, Samples], image_size: int,
                   device: torch.device | None = None) -> TensorDataset:
    splits = tuple(samples)
    check_memory(root, sum(map(len, samples.values())), image_size, device)
    decoded = {split: decode_all(samples[split], image_size) for split in splits}
    dataset = _make_dataset("imagefolder", decoded["train"], decoded["test"], len(classes), augment=True)
    val = {} if "val" not in decoded else {"val_images": torch.from_numpy(decoded["val"][0]),
                                           "val_labels": torch.from_numpy(decoded["val"][1])}
    return dataclasses.replace(dataset, class_names=tuple(classes), **val)
