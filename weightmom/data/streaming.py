"""An ImageFolder streamed from disk: decoded per batch by DataLoader workers, for folders too big to hold.

The training process plans each epoch: the order (one `randperm`) and, batch by batch, each sample's crop
window and flip, drawn from the same generator in the same sequence as weightmom.data.datasets draws them.
The workers only decode, pad, crop and flip. So for the same seed a streamed run sees the same batches as
an in-memory run (tests/test_streaming.py checks it), and a resumed run continues the same way. Batches
travel as uint8 (a quarter of float32), pinned when training on CUDA, and are normalised on the device.

A file that cannot be decoded mid-stream stops the run with one line naming it (a UsageError): in a sweep
that trial fails with that reason and the others go on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from weightmom.data.datasets import _PAD, normalize, validation_index
from weightmom.data.images import decode
from weightmom.errors import UsageError

__all__ = ["STATS_SAMPLES", "StreamingDataset", "crop"]

Samples = list[tuple[Path, int]]
Item = tuple[str, int, int, int, bool]   # (split, index, dy, dx, flip); dy < 0: no augmentation
Batch = tuple[torch.Tensor, torch.Tensor]

# Normalisation statistics come from at most this many training images (a seeded choice), so a
# million-image folder costs no extra epoch before training; below it they are those of every image,
# as in memory.
STATS_SAMPLES = 10_000
_STATS_BATCH = 256
MAX_WORKERS = 8


def crop(image: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """One sample of `augment_batch`: the (dy, dx) window of the zero-padded (C, H, W) image, maybe mirrored."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
    window = padded[:, dy:dy + h, dx:dx + w]
    return np.ascontiguousarray(window[:, :, ::-1] if flip else window)


class _BadImage:
    """A worker's decode failure, carried to the training process as data (an exception would arrive
    there wrapped in the worker's traceback, not as the one line that names the file)."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Decoder(Dataset):
    """What runs in the workers: (split, index, crop) -> uint8 image and label. Holds paths only."""

    def __init__(self, splits: dict[str, Samples], size: int) -> None:
        self.splits, self.size = splits, size

    def __len__(self) -> int:
        return sum(map(len, self.splits.values()))

    def __getitem__(self, item: Item) -> tuple[np.ndarray, int] | _BadImage:
        split, index, dy, dx, flip = item
        path, label = self.splits[split][index]
        try:
            image = decode(path, self.size)
        except UsageError as err:
            return _BadImage(str(err))
        return (crop(image, dy, dx, flip) if dy >= 0 else image), label


def _collate(items: list) -> Batch | _BadImage:
    bad = next((x for x in items if isinstance(x, _BadImage)), None)
    if bad is not None:
        return bad
    return torch.from_numpy(np.stack([x[0] for x in items])), torch.tensor([x[1] for x in items], dtype=torch.int64)


class _Plan:
    """The loader's batch sampler: the batches the latest stream planned (re-read at each `iter(loader)`)."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []

    def __iter__(self) -> Iterator[list[Item]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_workers() -> int:
    """The CPUs this process may run on, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:   # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


@dataclass(eq=False)
class StreamingDataset:
    """The same questions as a TensorDataset answers (splits, sizes, shape, statistics, batches), from files.

    One DataLoader with persistent workers serves every split in turn (train, then val, then test), so the
    worker processes start once per run, not once per epoch and split.
    """

    name: str
    samples: dict[str, Samples]      # train, test, and val when split off or given as val/
    image_size: int
    num_classes: int
    class_names: tuple[str, ...]
    workers: int | None = None       # None: default_workers()
    device: torch.device = torch.device("cpu")
    augment: bool = True
    _stats: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _loader: DataLoader | None = field(default=None, repr=False)
    _active: object = field(default=None, repr=False)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test") if "val" in self.samples else ("train", "test")

    def size(self, split: str) -> int:
        return len(self.samples.get(split, ()))

    def class_name(self, label: int) -> str:
        return self.class_names[label]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def mean(self) -> torch.Tensor:
        return self._statistics()[0]

    @property
    def std(self) -> torch.Tensor:
        return self._statistics()[1]

    def to(self, device: str | torch.device) -> StreamingDataset:
        """Where batches are delivered; nothing is loaded."""
        stats = None if self._stats is None else (self._stats[0].to(device), self._stats[1].to(device))
        return dataclasses.replace(self, device=torch.device(device), _stats=stats, _loader=None, _active=None)

    def split_validation(self, fraction: float, seed: int = 0) -> StreamingDataset:
        """`weightmom.data.split_validation` on the file list: the same images held out as in memory."""
        if fraction == 0 or "val" in self.samples:
            return self
        train = self.samples["train"]
        labels = np.array([label for _, label in train], dtype=np.int64)
        val_index = validation_index(labels, fraction, seed, self.name, self.class_name)
        keep = np.ones(labels.size, dtype=bool)
        keep[val_index] = False
        samples = {**self.samples, "train": [train[i] for i in np.flatnonzero(keep)],
                   "val": [train[i] for i in val_index]}
        return dataclasses.replace(self, samples=samples, _stats=None, _loader=None, _active=None)

    def first_images(self, n: int) -> torch.Tensor:
        """The first `n` training images, decoded here (uint8, on the device)."""
        arrays = [decode(path, self.image_size) for path, _ in self.samples["train"][:n]]
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    def iterate_batches(self, split: str, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                        drop_last: bool = False) -> Iterator[Batch]:
        """`weightmom.data.iterate_batches` for this dataset: planned now, decoded as consumed."""
        if split not in self.splits:
            raise UsageError(f"unknown split {split!r}; this dataset has: {', '.join(self.splits)}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        self._statistics()   # now: computed lazily inside a batch stream, it would restart that stream's loader
        n = self.size(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        augment = split == "train" and self.augment
        plan = [self._plan_batch(split, order[start:start + batch_size], augment, generator)
                for start in range(0, stop, batch_size)]
        return self._normalised(self._stream(plan))

    def close(self) -> None:
        """Stop the worker processes now (they would stop when this object is collected)."""
        loader, self._loader, self._active = self._loader, None, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _plan_batch(split: str, index: torch.Tensor, augment: bool, generator: torch.Generator | None) -> list[Item]:
        """One batch's items; the crop draws are augment_batch's, in its order (dy, dx, flip)."""
        n = index.numel()
        if not augment:
            return [(split, int(i), -1, -1, False) for i in index]
        dy, dx, flip = (torch.randint(0, high, (n,), generator=generator).tolist()
                        for high in (2 * _PAD + 1, 2 * _PAD + 1, 2))
        return [(split, int(i), a, b, bool(f)) for i, a, b, f in zip(index.tolist(), dy, dx, flip)]

    def _normalised(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for images, labels in batches:
            images = images.to(self.device, non_blocking=True)
            yield normalize(images, self), labels.to(self.device, non_blocking=True)

    def _stream(self, plan: list[list[Item]]) -> Iterator[Batch]:
        """Run `plan` through the shared loader; a second stream started meanwhile makes this one invalid."""
        loader = self._get_loader()
        token = self._active = object()
        loader.batch_sampler.batches = plan
        for batch in loader:
            if self._active is not token:
                raise RuntimeError(f"{self.name}: two batch streams of one StreamingDataset were interleaved")
            if isinstance(batch, _BadImage):
                raise UsageError(batch.message)
            yield batch

    def _get_loader(self) -> DataLoader:
        if self._loader is None:
            workers = default_workers() if self.workers is None else self.workers
            # forkserver: workers forked from a clean server, not from a training process whose threads
            # (OpenMP, Ray, MLflow) a fork would copy mid-state (a worker died of a double free that way).
            extra = ({"persistent_workers": True, "prefetch_factor": 4, "multiprocessing_context": "forkserver"}
                     if workers > 0 else {})
            self._loader = DataLoader(_Decoder(self.samples, self.image_size), batch_sampler=_Plan(),
                                      num_workers=workers, collate_fn=_collate,
                                      pin_memory=self.device.type == "cuda", **extra)
        return self._loader

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images (of STATS_SAMPLES of them, if more)."""
        if self._stats is None:
            n = self.size("train")
            pick = np.arange(n) if n <= STATS_SAMPLES else np.sort(
                np.random.default_rng(0).choice(n, STATS_SAMPLES, replace=False))
            plan = [[("train", int(i), -1, -1, False) for i in pick[s:s + _STATS_BATCH]]
                    for s in range(0, len(pick), _STATS_BATCH)]
            sums, squares, count = [0] * 3, [0] * 3, 0
            for images, _ in self._stream(plan):
                pixels = images.transpose(0, 1).reshape(3, -1).to(torch.int64)
                sums = [a + int(b) for a, b in zip(sums, pixels.sum(1))]
                squares = [a + int(b) for a, b in zip(squares, (pixels * pixels).sum(1))]
                count += pixels.shape[1]
            mean = [float(Fraction(s, count)) for s in sums]
            # Exact integer sums, so the result matches the in-memory float64 statistics to rounding.
            var = [float(Fraction(count * q - s * s, count * max(count - 1, 1))) for s, q in zip(sums, squares)]
            self._stats = (torch.tensor(mean, dtype=torch.float32).to(self.device),
                           torch.tensor(var, dtype=torch.float64).sqrt().clamp_min(1e-6).float().to(self.device))
        return self._stats
