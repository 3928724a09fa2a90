"""Tests for weightmom.data.datasets on the real CIFAR-10 subset in ../shared and sklearn digits."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from weightmom.data.datasets import (
    DATASETS,
    TensorDataset,
    augment_batch,
    iterate_batches,
    load_dataset,
    normalize,
    split_validation,
)
from weightmom.errors import UsageError

CIFAR_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-mini"
CIFAR_BATCHES = CIFAR_ROOT / "cifar-10-batches-py"

needs_cifar = pytest.mark.skipif(not CIFAR_BATCHES.is_dir(), reason=f"CIFAR-10 subset not found at {CIFAR_BATCHES}")


@pytest.fixture(scope="module")
def cifar() -> TensorDataset:
    if not CIFAR_BATCHES.is_dir():
        pytest.skip(f"CIFAR-10 subset not found at {CIFAR_BATCHES}")
    return load_dataset("cifar10", data_dir=str(CIFAR_ROOT))


@pytest.fixture(scope="module")
def digits() -> TensorDataset:
    return load_dataset("digits")


def _collect(dataset: TensorDataset, split: str, batch_size: int, **kwargs):
    batches = list(iterate_batches(dataset, split, batch_size, **kwargs))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def _write_batch(path: Path, data: np.ndarray, labels: list[int], key: str = "labels") -> None:
    with path.open("wb") as f:
        pickle.dump({"data": data, key: labels}, f)


# --- loading -----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(DATASETS) == {"digits", "cifar10", "cifar100"}


def test_cifar10_subset(cifar: TensorDataset) -> None:
    assert cifar.name == "cifar10" and cifar.num_classes == 10 and cifar.augment
    assert cifar.train_images.shape == (3728, 3, 32, 32)
    assert cifar.test_images.shape == (846, 3, 32, 32)
    assert cifar.train_images.dtype == cifar.test_images.dtype == torch.uint8
    assert cifar.train_labels.dtype == cifar.test_labels.dtype == torch.int64
    assert cifar.input_shape == (3, 32, 32)
    for labels in (cifar.train_labels, cifar.test_labels):
        assert 0 <= int(labels.min()) and int(labels.max()) <= 9
    counts = torch.bincount(cifar.train_labels, minlength=10)
    assert int(counts.min()) > 0.7 * 372.8 and int(counts.max()) < 1.3 * 372.8
    assert cifar.mean.dtype == cifar.std.dtype == torch.float32 and cifar.mean.shape == (3,)
    assert all(100 < m < 140 for m in cifar.mean.tolist()), cifar.mean
    assert all(50 < s < 80 for s in cifar.std.tolist()), cifar.std
    # The red plane comes first: CIFAR's red mean exceeds its blue mean.
    assert cifar.mean[0] > cifar.mean[2]


def test_cifar10_accepts_batches_dir_itself(cifar: TensorDataset) -> None:
    direct = load_dataset("cifar10", data_dir=str(CIFAR_BATCHES))
    assert torch.equal(direct.train_images, cifar.train_images)
    assert torch.equal(direct.test_labels, cifar.test_labels)


def test_cifar10_reads_batches_in_numeric_order(tmp_path: Path) -> None:
    # data_batch_10 must come after data_batch_2, and gaps (no 1, no 3) are fine.
    rows = np.zeros((1, 3072), dtype=np.uint8)
    _write_batch(tmp_path / "data_batch_10", rows + 10, [1])
    _write_batch(tmp_path / "data_batch_2", rows + 2, [0])
    _write_batch(tmp_path / "test_batch", rows, [3])
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.train_images[:, 0, 0, 0].tolist() == [2, 10]
    assert ds.train_labels.tolist() == [0, 1]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_reads_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    # The numpy-only unpickler must still accept arrays however a subset was written.
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for name in ("data_batch_1", "test_batch"):
        with (tmp_path / name).open("wb") as f:
            pickle.dump({"data": data, "labels": [4, 5]}, f, protocol=protocol)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert torch.equal(ds.test_images.reshape(2, -1), torch.from_numpy(data))


def test_cifar100_layout(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    _write_batch(folder / "train", data, [0, 99, 5, 7, 42], key="fine_labels")
    _write_batch(folder / "test", data[:2], [1, 2], key="fine_labels")
    ds = load_dataset("cifar100", data_dir=str(tmp_path))
    assert ds.num_classes == 100 and ds.train_labels.tolist() == [0, 99, 5, 7, 42]
    # Row layout: 1024 red, then green, then blue values of a row-major 32x32 image.
    assert torch.equal(ds.train_images[1, 1, 2, 3], torch.tensor(data[1, 1024 + 2 * 32 + 3]))


def test_digits_split(digits: TensorDataset) -> None:
    assert digits.train_images.shape == (1347, 1, 8, 8)
    assert digits.test_images.shape == (450, 1, 8, 8)
    assert digits.train_images.dtype == torch.uint8 and int(digits.train_images.max()) == 16
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert not digits.augment
    test_counts = torch.bincount(digits.test_labels, minlength=10)
    assert int(test_counts.min()) >= 40  # stratified: ~45 a class
    again = load_dataset("digits")
    assert torch.equal(again.train_images, digits.train_images)
    assert torch.equal(again.test_labels, digits.test_labels)


def test_digits_is_scikit_learns_own_stratified_split(digits: TensorDataset) -> None:
    """The stored row order reproduces train_test_split exactly: the split every recorded digits sweep used."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.data.reshape(-1, 1, 8, 8).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(images, bunch.target, test_size=0.25, random_state=0,
                                                        stratify=bunch.target)
    assert np.array_equal(digits.train_images.numpy(), x_train) and np.array_equal(digits.train_labels.numpy(), y_train)
    assert np.array_equal(digits.test_images.numpy(), x_test) and np.array_equal(digits.test_labels.numpy(), y_test)


def test_to_moves_every_tensor(digits: TensorDataset) -> None:
    moved = digits.to("cpu")
    assert moved is not digits and moved.device == torch.device("cpu")
    for field in dataclasses.fields(moved):
        value = getattr(moved, field.name)
        if isinstance(value, torch.Tensor):
            assert value.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_cpu_generator(digits: TensorDataset) -> None:
    ds = load_dataset("digits", device="cuda")
    assert ds.train_images.is_cuda and ds.mean.is_cuda
    gen = torch.Generator().manual_seed(0)
    images, labels = next(iterate_batches(ds, "train", 64, shuffle=True, generator=gen))
    assert images.is_cuda and labels.is_cuda
    out = augment_batch(ds.train_images[:16], torch.Generator().manual_seed(1))
    assert out.is_cuda
    cpu_out = augment_batch(digits.train_images[:16], torch.Generator().manual_seed(1))
    assert torch.equal(out.cpu(), cpu_out)


# --- batching ----------------------------------------------------------------------------------


def _indexed(dataset: TensorDataset) -> TensorDataset:
    """The dataset with each train label replaced by the example's index, to track coverage."""
    n = dataset.train_images.shape[0]
    return dataclasses.replace(dataset, train_labels=torch.arange(n), num_classes=n)


@pytest.mark.parametrize("name", ["digits", "cifar"])
def test_epoch_covers_every_example_once(name: str, request: pytest.FixtureRequest) -> None:
    ds = _indexed(request.getfixturevalue(name))
    n = ds.train_images.shape[0]
    gen = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(ds, "train", 500, shuffle=True, generator=gen))
    assert [b[0].shape[0] for b in batches] == [500] * (n // 500) + [n % 500]
    for images, labels in batches:
        assert images.dtype == torch.float32 and images.shape[1:] == ds.train_images.shape[1:]
        assert labels.dtype == torch.int64
    seen = torch.cat([b[1] for b in batches])
    assert torch.equal(seen.sort().values, torch.arange(n))
    assert not torch.equal(seen, torch.arange(n))  # actually shuffled


def test_drop_last(digits: TensorDataset) -> None:
    batches = list(iterate_batches(digits, "train", 100, shuffle=False, drop_last=True))
    assert len(batches) == 13 and all(b[0].shape == (100, 1, 8, 8) for b in batches)


def test_normalised_train_statistics(digits: TensorDataset, cifar: TensorDataset) -> None:
    images, _ = _collect(digits, "train", 256, shuffle=False)
    assert abs(float(images.mean())) < 1e-4 and abs(float(images.std()) - 1) < 1e-3
    full = normalize(cifar.train_images, cifar)
    per_channel = full.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-3)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-3)


def test_same_seed_same_order(cifar: TensorDataset) -> None:
    first = _collect(cifar, "train", 1000, shuffle=True, generator=torch.Generator().manual_seed(3))
    second = _collect(cifar, "train", 1000, shuffle=True, generator=torch.Generator().manual_seed(3))
    other = _collect(cifar, "train", 1000, shuffle=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])


def test_test_split_never_augments(cifar: TensorDataset) -> None:
    gen = torch.Generator().manual_seed(0)
    images, labels = _collect(cifar, "test", 200, shuffle=False, generator=gen)
    assert torch.equal(images, normalize(cifar.test_images, cifar))
    assert torch.equal(labels, cifar.test_labels)


def test_train_split_augments_cifar(cifar: TensorDataset) -> None:
    images, _ = _collect(cifar, "train", 1000, shuffle=False, generator=torch.Generator())
    assert not torch.equal(images, normalize(cifar.train_images, cifar))


def test_bad_split_and_batch_size(digits: TensorDataset) -> None:
    with pytest.raises(UsageError, match="split"):
        iterate_batches(digits, "val", 10, shuffle=False)
    with pytest.raises(UsageError, match="batch_size"):
        iterate_batches(digits, "train", 0, shuffle=False)


# --- augmentation ------------------------------------------------------------------------------


def test_augment_shape_dtype_determinism(cifar: TensorDataset) -> None:
    batch = cifar.train_images[:64]
    a = augment_batch(batch, torch.Generator().manual_seed(0))
    b = augment_batch(batch, torch.Generator().manual_seed(0))
    c = augment_batch(batch, torch.Generator().manual_seed(1))
    assert a.shape == batch.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_is_a_crop_of_the_padded_image(cifar: TensorDataset) -> None:
    """Every output is exactly one 32x32 window of the zero-padded, maybe flipped, input."""
    batch = cifar.train_images[:64]
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    padded = F.pad(batch, (4, 4, 4, 4))
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)  # (N, C, 9, 9, 32, 32): [dy, dx]
    found = set()
    for i in range(batch.shape[0]):
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i].flip(-1) if flip else out[i], windows[i, :, dy, dx])
        ]
        assert matches, f"sample {i} is not a crop of its padded image"
        found.update(matches)
    assert {flip for flip, _, _ in found} == {False, True}  # some flipped, some not
    assert any((dy, dx) != (4, 4) for _, dy, dx in found)  # some shifted

    # One sample checked by hand: output = padded[dy:dy+32, dx:dx+32], flipped if drawn so.
    flip, dy, dx = next(m for m in sorted(found) if m[1:] != (4, 4))
    i = next(
        i for i in range(batch.shape[0]) if torch.equal(out[i].flip(-1) if flip else out[i], windows[i, :, dy, dx])
    )
    expected = padded[i, :, dy : dy + 32, dx : dx + 32]
    assert torch.equal(out[i], expected.flip(-1) if flip else expected)


def test_augment_flips_match_flipped_original(cifar: TensorDataset) -> None:
    batch = cifar.train_images[:64]
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    # A flipped output is a window of the padded *flipped* original.
    flipped_windows = F.pad(batch.flip(-1), (4, 4, 4, 4)).unfold(2, 32, 1).unfold(3, 32, 1)
    flipped = [
        i for i in range(batch.shape[0]) if (flipped_windows[i] == out[i][:, None, None]).flatten(3).all(3).all(0).any()
    ]
    assert 10 < len(flipped) < 54  # about half of 64


def test_augment_pads_with_zeros() -> None:
    white = torch.full((256, 3, 32, 32), 255, dtype=torch.uint8)
    out = augment_batch(white, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 255}
    border = torch.cat(
        [
            out[:, :, 0].flatten(1),
            out[:, :, -1].flatten(1),
            out[:, :, :, 0].flatten(1),
            out[:, :, :, -1].flatten(1),
        ],
        dim=1,
    )
    has_zero_border = (border == 0).any(1)
    assert 0 < int(has_zero_border.sum()) < 256  # most crops shift, a few (dy=dx=4) do not
    # Zeros only ever form whole border rows/columns: the centre stays white.
    assert bool((out[:, :, 4:28, 4:28] == 255).all())


# --- errors ------------------------------------------------------------------------------------


def _usage_error(name: str, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_dataset(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_dataset() -> None:
    message = _usage_error("mnist")
    assert "mnist" in message and "cifar10" in message and "digits" in message


def test_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert str(missing) in _usage_error("cifar10", data_dir=str(missing))


def test_dir_without_batches(tmp_path: Path) -> None:
    message = _usage_error("cifar10", data_dir=str(tmp_path))
    assert str(tmp_path) in message and "cifar-10-batches-py" in message
    (tmp_path / "data_batch_1").write_bytes(b"")
    assert "test_batch" in _usage_error("cifar10", data_dir=str(tmp_path))
    assert "cifar-100-python" in _usage_error("cifar100", data_dir=str(tmp_path))


def test_corrupt_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "data_batch_1").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _write_batch(tmp_path / "test_batch", np.zeros((2, 3072), dtype=np.uint8), [0, 1])
    message = _usage_error("cifar10", data_dir=str(tmp_path))
    assert "data_batch_1" in message and str(tmp_path) in message


@needs_cifar
def test_truncated_real_batch(tmp_path: Path) -> None:
    data = (CIFAR_BATCHES / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(data[: len(data) // 2])
    shutil.copy(CIFAR_BATCHES / "test_batch", tmp_path / "test_batch")
    assert "data_batch_1" in _usage_error("cifar10", data_dir=str(tmp_path))


def test_batch_with_wrong_keys_or_shape(tmp_path: Path) -> None:
    with (tmp_path / "data_batch_1").open("wb") as f:
        pickle.dump({"pixels": np.zeros((1, 3072), dtype=np.uint8)}, f)
    _write_batch(tmp_path / "test_batch", np.zeros((2, 3072), dtype=np.uint8), [0, 1])
    assert "data_batch_1" in _usage_error("cifar10", data_dir=str(tmp_path))
    _write_batch(tmp_path / "data_batch_1", np.zeros((2, 100), dtype=np.uint8), [0, 1])
    assert "3072" in _usage_error("cifar10", data_dir=str(tmp_path))


def test_pickle_with_foreign_globals_is_refused(tmp_path: Path) -> None:
    # A batch file must not be able to run code: only numpy arrays may be built.
    with (tmp_path / "data_batch_1").open("wb") as f:
        pickle.dump({"data": Path("x"), "labels": [0]}, f)
    _write_batch(tmp_path / "test_batch", np.zeros((2, 3072), dtype=np.uint8), [0, 1])
    assert "refusing" in _usage_error("cifar10", data_dir=str(tmp_path))


# -- the validation split -----------------------------------------------------------------


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row.numpy().tobytes()) for row in images.reshape(images.shape[0], -1)}


def test_validation_split_is_stratified_disjoint_and_fixed_by_its_own_seed(digits: TensorDataset) -> None:
    split = split_validation(digits, 0.1, seed=0)
    assert split.size("train") + split.size("val") == digits.size("train")
    assert torch.equal(split.test_labels, digits.test_labels)  # the test set is untouched
    for label in range(10):  # stratified: each class gives round(10%) of its samples
        n = int((digits.train_labels == label).sum())
        assert int((split.val_labels == label).sum()) == round(0.1 * n)
    train_rows, val_rows = _rows(split.train_images), _rows(split.val_images)
    assert _rows(digits.train_images) == train_rows | val_rows
    again = split_validation(digits, 0.1, seed=0)
    assert torch.equal(again.val_images, split.val_images) and torch.equal(again.val_labels, split.val_labels)
    other = split_validation(digits, 0.1, seed=1)
    assert not torch.equal(other.val_images, split.val_images)
    assert split_validation(digits, 0.0) is digits and split_validation(split, 0.2) is split
    with pytest.raises(UsageError, match="val_fraction"):
        split_validation(digits, 0.7)


def test_validation_split_names_a_class_left_without_samples(digits: TensorDataset) -> None:
    labels = digits.train_labels.clone()
    sevens = torch.nonzero(labels == 7).flatten()
    labels[sevens[1:]] = 3  # one 7 left: 10% of it rounds to no validation sample
    rare = dataclasses.replace(digits, train_labels=labels)
    with pytest.raises(UsageError, match="leaves class '7'"):
        split_validation(rare, 0.1)


def test_training_seeds_share_one_validation_split(monkeypatch) -> None:
    """train() splits by split_seed alone: runs with training seeds 0 and 1 hold out the same images."""
    import weightmom.training as training

    seen = []

    def recording(dataset: TensorDataset, fraction: float, seed: int = 0) -> TensorDataset:
        result = split_validation(dataset, fraction, seed)
        seen.append(result.val_images.clone())
        return result

    monkeypatch.setattr(training, "split_validation", recording)
    runs = [training.train(training.TrainConfig(epochs=1, seed=seed, device="cpu"), progress=False) for seed in (0, 1)]
    assert torch.equal(seen[0], seen[1])
    assert runs[0].metrics["val_size"] == runs[1].metrics["val_size"] == seen[0].shape[0]
    assert runs[0].metrics["train_size"] + runs[0].metrics["val_size"] == 1347
