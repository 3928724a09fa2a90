"""Datasets as device-resident tensors, with batching and augmentation on the device.

Small image datasets fit in GPU memory whole, so (as in airbench) they are loaded
once into uint8 tensors on the training device and every epoch's shuffling,
cropping, flipping and normalisation runs as a few batched tensor operations.
That removes the DataLoader and the per-sample PIL transforms, which otherwise
dominate the time of short pruning runs on small networks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from weightmom.errors import UsageError

__all__ = [
    "DATASETS",
    "TensorDataset",
    "augment_batch",
    "iterate_batches",
    "load_dataset",
    "normalize",
    "split_validation",
]

_PAD = 4
_DEFAULT_CACHE = "~/.cache/weightmom"
_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_CIFAR_ROW = 3 * 32 * 32


@dataclass(frozen=True, eq=False)
class TensorDataset:
    """Train/test (and, once split, validation) images held as tensors on one device.

    Images stay uint8 so a full CIFAR-10 copy costs 150 MB rather than 600 MB;
    ``normalize`` makes float batches on the fly. ``eq=False`` because
    element-wise tensor comparison cannot give one truth value. The validation
    split is None until ``split_validation`` carves it out of the training data.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    augment: bool
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for split in self.splits:
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise UsageError(
                    f"{self.name}: {split}_images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise UsageError(
                    f"{self.name}: {split}_labels must be int64 ({images.shape[0]},), "
                    f"got {labels.dtype} {tuple(labels.shape)}"
                )

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset holds: train and test, plus val once split off."""
        return ("train", "val", "test") if self.val_images is not None else ("train", "test")

    def size(self, split: str) -> int:
        """Number of samples in ``split`` (0 for a validation split that was not made)."""
        labels = getattr(self, f"{split}_labels")
        return 0 if labels is None else int(labels.shape[0])

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(label)

    def first_images(self, n: int) -> torch.Tensor:
        """The first `n` training images, uint8: what a model's first forward and a pruner's layer scan need."""
        return self.train_images[:n]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, what a model constructor needs."""
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def device(self) -> torch.device:
        """The device every tensor of the dataset lives on."""
        return self.train_images.device

    def to(self, device: str | torch.device) -> TensorDataset:
        """A copy with every tensor on ``device`` (a no-op copy if already there)."""
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
            val_images=None if self.val_images is None else self.val_images.to(device),
            val_labels=None if self.val_labels is None else self.val_labels.to(device),
            mean=self.mean.to(device),
            std=self.std.to(device),
        )


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in float32."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    # A constant channel would divide by zero; clamping keeps it at 0 instead.
    return pixels.mean(dim=1).float(), pixels.std(dim=1).clamp_min(1e-6).float()


def split_validation(dataset: TensorDataset, fraction: float, seed: int = 0) -> TensorDataset:
    """Carve a stratified validation split out of the training data; training never sees it.

    The split depends on ``seed`` alone (not on the training seed), so trials with different
    training seeds are selected on the same images. Each class gives ``round(fraction * n_c)``
    samples; a class that would give none is an error, since its accuracy could not be measured.
    Normalisation statistics are recomputed from what is left for training. A dataset that
    already has a validation split (e.g. an ImageFolder ``val/``) is returned unchanged.
    """
    if not isinstance(dataset, TensorDataset):   # a streamed ImageFolder splits its file list the same way
        return dataset.split_validation(fraction, seed)
    if fraction == 0 or dataset.val_images is not None:
        return dataset
    labels = dataset.train_labels.cpu().numpy()
    val_index = validation_index(labels, fraction, seed, dataset.name, dataset.class_name)
    keep = np.ones(labels.size, dtype=bool)
    keep[val_index] = False
    device = dataset.train_images.device
    val_index_t = torch.from_numpy(val_index).to(device)
    train_index_t = torch.from_numpy(np.flatnonzero(keep)).to(device)
    train_images = dataset.train_images[train_index_t]
    mean, std = _channel_stats(train_images.cpu())
    return dataclasses.replace(
        dataset,
        train_images=train_images,
        train_labels=dataset.train_labels[train_index_t],
        val_images=dataset.train_images[val_index_t],
        val_labels=dataset.train_labels[val_index_t],
        mean=mean.to(device),
        std=std.to(device),
    )


def validation_index(labels: np.ndarray, fraction: float, seed: int, name: str,
                     class_name: Callable[[int], str]) -> np.ndarray:
    """The sorted indices of the stratified validation split: `split_validation`'s rule, shared by both paths."""
    if not 0 < fraction < 0.5:
        raise UsageError(f"val_fraction must be in [0, 0.5) (got {fraction})")
    rng = np.random.default_rng(seed)
    val_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = int(round(fraction * members.size))
        if n_val == 0:
            raise UsageError(
                f"{name}: val_fraction {fraction} leaves class "
                f"{class_name(int(label))!r} ({members.size} training samples) with no "
                "validation sample; raise val_fraction or add data"
            )
        val_parts.append(rng.permutation(members)[:n_val])
    return np.sort(np.concatenate(val_parts))


def _make_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    augment: bool,
) -> TensorDataset:
    """Build a CPU dataset; statistics come from the train split only, so test data never leaks."""
    train_images = torch.from_numpy(np.ascontiguousarray(train[0], dtype=np.uint8))
    mean, std = _channel_stats(train_images)
    return TensorDataset(
        name=name,
        train_images=train_images,
        train_labels=torch.from_numpy(np.asarray(train[1], dtype=np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(test[0], dtype=np.uint8)),
        test_labels=torch.from_numpy(np.asarray(test[1], dtype=np.int64)),
        num_classes=num_classes,
        mean=mean,
        std=std,
        augment=augment,
    )


def _load_digits(data_dir: str | None = None) -> TensorDataset:
    """scikit-learn's bundled 8x8 digits: needs no download, so tests and CI can train for real.

    The split is scikit-learn's stratified 75/25 (random_state 0), stored as row order in digits_split.npy
    (tests/test_data.py checks it against train_test_split). Reading the CSV directly spares every trial
    worker the 1.2 s import of scikit-learn.
    """
    csv = _sklearn_file("datasets/data/digits.csv.gz")
    if csv is None:   # a scikit-learn that keeps its data elsewhere: its own loader
        from sklearn.datasets import load_digits

        bunch = load_digits()
        table = np.column_stack([bunch.data, bunch.target])
    else:
        table = np.loadtxt(csv, delimiter=",")
    order = np.load(Path(__file__).with_name("digits_split.npy")).astype(np.int64)
    images = table[order, :-1].reshape(-1, 1, 8, 8).astype(np.uint8)  # values 0..16
    labels = table[order, -1].astype(np.int64)
    train = len(order) - (len(order) + 3) // 4   # scikit-learn rounds the test share up
    return _make_dataset("digits", (images[:train], labels[:train]), (images[train:], labels[train:]), 10,
                         augment=False)


def _sklearn_file(relative: str) -> Path | None:
    """A file inside the installed scikit-learn package (a dependency), found without importing it."""
    path = Path(importlib.util.find_spec("sklearn").origin).parent / relative
    return path if path.is_file() else None


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays.

    A CIFAR batch needs nothing else, and refusing other globals keeps a
    user-supplied ``data_dir`` from running arbitrary code through pickle.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _read_cifar_batch(path: Path, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python-version pickle into uint8 (N, 3, 32, 32) images and int64 labels."""
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[labels_key], dtype=np.int64)
    # Garbage bytes can make pickle raise almost any exception type, so catch
    # them all: the user only needs to know which file is bad.
    except Exception as err:
        raise UsageError(f"cannot read CIFAR batch file {path}: {_one_line(err)}") from err
    if data.ndim != 2 or data.shape[1] != _CIFAR_ROW or labels.shape != (data.shape[0],):
        raise UsageError(
            f"cannot read CIFAR batch file {path}: expected 'data' N x {_CIFAR_ROW} and N labels, "
            f"got data {data.shape} and labels {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _resolve_cifar_dir(data_dir: str | Path, subdir: str) -> Path:
    """Accept the folder holding ``subdir`` or ``subdir`` itself, as users pass either."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UsageError(f"data_dir does not exist or is not a directory: {root}")
    return root / subdir if (root / subdir).is_dir() else root


def _concat(
    parts: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_cifar10(data_dir: str | Path) -> TensorDataset:
    """Read every present ``data_batch_N``: subsets (like the test fixture) may lack some."""
    folder = _resolve_cifar_dir(data_dir, _CIFAR10_DIR)
    numbered: list[tuple[int, Path]] = []
    for p in folder.iterdir():
        m = re.fullmatch(r"data_batch_(\d+)", p.name)
        if m and p.is_file():
            numbered.append((int(m.group(1)), p))
    test_path = folder / "test_batch"
    if not numbered or not test_path.is_file():
        raise UsageError(f"no CIFAR-10 '{_CIFAR10_DIR}' layout in {folder}: expected data_batch_N and test_batch files")
    train = _concat([_read_cifar_batch(p, "labels") for _, p in sorted(numbered)])
    test = _read_cifar_batch(test_path, "labels")
    return _make_dataset("cifar10", train, test, 10, augment=True)


def _read_cifar100(data_dir: str | Path) -> TensorDataset:
    """Read the ``train`` and ``test`` pickles with the 100 fine labels."""
    folder = _resolve_cifar_dir(data_dir, _CIFAR100_DIR)
    train_path, test_path = folder / "train", folder / "test"
    if not train_path.is_file() or not test_path.is_file():
        raise UsageError(f"no CIFAR-100 '{_CIFAR100_DIR}' layout in {folder}: expected train and test files")
    train = _read_cifar_batch(train_path, "fine_labels")
    test = _read_cifar_batch(test_path, "fine_labels")
    return _make_dataset("cifar100", train, test, 100, augment=True)


def _download_root(dataset_cls_name: str) -> Path:
    """Download through torchvision, which verifies the official MD5 sums, and return the root."""
    import torchvision.datasets

    root = Path(_DEFAULT_CACHE).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    # train=False: the download and checksum cover both splits, and the
    # constructor then parses only the small test file.
    getattr(torchvision.datasets, dataset_cls_name)(root=str(root), train=False, download=True)
    return root


def _load_cifar10(data_dir: str | None = None) -> TensorDataset:
    return _read_cifar10(data_dir if data_dir is not None else _download_root("CIFAR10"))


def _load_cifar100(data_dir: str | None = None) -> TensorDataset:
    return _read_cifar100(data_dir if data_dir is not None else _download_root("CIFAR100"))


DATASETS: dict[str, Callable[..., TensorDataset]] = {
    "digits": _load_digits,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
}


def load_dataset(name: str, data_dir: str | None = None, device: str | torch.device = "cpu") -> TensorDataset:
    """Load dataset ``name`` once and move it whole to ``device``.

    ``data_dir`` points at an existing CIFAR copy (read as is, no checksum);
    without it CIFAR is downloaded (checksum-verified) into the cache folder. ``digits`` ignores it.
    """
    loader = DATASETS.get(name)
    if loader is None:
        raise UsageError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return loader(data_dir=data_dir).to(device)


def normalize(images_uint8: torch.Tensor, dataset: TensorDataset) -> torch.Tensor:
    """Float32 ``(x - mean) / std`` per channel, with the train split's statistics."""
    mean = dataset.mean.to(images_uint8.device)[:, None, None]
    std = dataset.std.to(images_uint8.device)[:, None, None]
    return (images_uint8.float() - mean) / std


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Draw on the generator's device (it may be a CPU generator for CUDA data), then move."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


def augment_batch(images_uint8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after 4-pixel zero padding, plus random horizontal flip, for the whole batch.

    The batch is padded once and each output is gathered from its own
    (dy, dx) window; a flip just reverses that sample's column indices. One
    gather instead of a loop over samples keeps it fast on a GPU.
    """
    if images_uint8.dim() != 4:
        raise UsageError(f"augment_batch needs (N, C, H, W) images, got shape {tuple(images_uint8.shape)}")
    n, c, h, w = images_uint8.shape
    device = images_uint8.device
    padded = F.pad(images_uint8, (_PAD, _PAD, _PAD, _PAD))
    dy = _randint(2 * _PAD + 1, n, generator, device)
    dx = _randint(2 * _PAD + 1, n, generator, device)
    flip = _randint(2, n, generator, device).bool()
    rows = dy[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def iterate_batches(
    dataset: TensorDataset,
    split: str,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (normalised float32 images, int64 labels) on the dataset's device.

    The train split is augmented when ``dataset.augment``; the val and test splits
    never are, so evaluation is deterministic. Arguments are checked here, at the call,
    rather than at the first ``next``.
    """
    if not isinstance(dataset, TensorDataset):   # a streamed ImageFolder: its DataLoader makes the batches
        return dataset.iterate_batches(split, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
    if split not in dataset.splits:
        raise UsageError(f"unknown split {split!r}; this dataset has: {', '.join(dataset.splits)}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    images = getattr(dataset, f"{split}_images")
    labels = getattr(dataset, f"{split}_labels")
    order = None
    if shuffle:
        n = images.shape[0]
        gen_device = generator.device if generator is not None else images.device
        order = torch.randperm(n, generator=generator, device=gen_device)
        order = order.to(images.device)
    augment = split == "train" and dataset.augment
    return _batches(dataset, images, labels, batch_size, order, augment, generator, drop_last)


def _batches(
    dataset: TensorDataset,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order: torch.Tensor | None,
    augment: bool,
    generator: torch.Generator | None,
    drop_last: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = images.shape[0]
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            batch = slice(start, start + batch_size)
            batch_images, batch_labels = images[batch], labels[batch]
        else:
            idx = order[start : start + batch_size]
            batch_images, batch_labels = images[idx], labels[idx]
        if augment:
            batch_images = augment_batch(batch_images, generator)
        yield normalize(batch_images, dataset), batch_labels
