"""The streaming ImageFolder path, the memory/stream switch, the copy-once-per-node step and bad images mid-stream.

Data: drawn shapes (examples/make_shapes.py, 3 classes, PNGs) and the real CIFAR-10 subset in ../shared.
The memory cap is set for a test through WEIGHTMOM_MEMORY_CAP_BYTES, as a user would set it.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO
from weightmom import TrainConfig, train
from weightmom.data.datasets import TensorDataset, iterate_batches, split_validation
from weightmom.data.imagefolder import MEMORY_CAP_ENV, decoded_bytes, open_imagefolder, scan
from weightmom.data.node_copy import MARKER, local_data_dir, node_copy
from weightmom.data.sources import data_loader
from weightmom.data.streaming import StreamingDataset, crop
from weightmom.errors import UsageError

sys.path.insert(0, str(REPO / "examples"))
from make_shapes import make_shapes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """90 training images a class: enough for a small network to learn, small enough to decode in a second."""
    return make_shapes(tmp_path_factory.mktemp("shapes") / "shapes", train=90, test=30, size=32, seed=0)


def _both(folder: Path, workers: int = 2, fraction: float = 0.1) -> tuple[TensorDataset, StreamingDataset]:
    memory = split_validation(open_imagefolder(str(folder), 32, "memory"), fraction, 0)
    stream = split_validation(open_imagefolder(str(folder), 32, "stream", workers=workers), fraction, 0)
    return memory, stream


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_gives_the_in_memory_batches(shapes: Path, workers: int) -> None:
    """Same split, statistics, order, crops and flips: the plan is drawn from the same generator in the same order."""
    memory, stream = _both(shapes, workers)
    try:
        assert isinstance(stream, StreamingDataset) and stream.splits == memory.splits == ("train", "val", "test")
        assert [stream.size(s) for s in stream.splits] == [memory.size(s) for s in memory.splits] == [243, 27, 90]
        for split in ("train", "val", "test"):   # the statistics are first needed inside the first stream
            a, b = (list(iterate_batches(data, split, 50, shuffle=split == "train",
                                         generator=torch.Generator().manual_seed(5))) for data in (memory, stream))
            assert len(a) == len(b)
            for (xa, ya), (xb, yb) in zip(a, b):
                assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-5), split
        assert torch.allclose(stream.mean, memory.mean) and torch.allclose(stream.std, memory.std)
        assert torch.equal(stream.first_images(2), memory.train_images[:2])
    finally:
        stream.close()


def test_crop_is_one_sample_of_augment_batch() -> None:
    from weightmom.data.datasets import augment_batch

    images = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(0)
    dy, dx, flip = (torch.randint(0, high, (64,), generator=draws) for high in (9, 9, 2))
    for i in range(64):
        assert np.array_equal(crop(images[i].numpy(), int(dy[i]), int(dx[i]), bool(flip[i])), out[i].numpy())


def test_a_folder_above_the_cap_trains_through_the_stream_like_in_memory(shapes: Path, monkeypatch) -> None:
    config = TrainConfig(dataset="imagefolder", data_dir=str(shapes), epochs=5, batch_size=32, lr=0.005,
                         optimizer="adam", model="lenet300", device="cpu", data_workers=2)
    assert isinstance(data_loader("imagefolder", str(shapes))(), TensorDataset)   # this machine's cap: fits
    held = train(config, progress=False).metrics
    monkeypatch.setenv(MEMORY_CAP_ENV, str(decoded_bytes(scan(shapes)[1], 32) - 1))   # one byte short
    assert isinstance(data_loader("imagefolder", str(shapes), 32, "auto", workers=0)(), StreamingDataset)
    streamed = train(config, progress=False).metrics
    assert held["test_accuracy"] > 0.45   # chance: 1/3
    # Same batches, so the same run up to float rounding; "within noise" asks much less than this.
    assert abs(streamed["test_accuracy"] - held["test_accuracy"]) <= 0.05
    assert abs(streamed["train_loss"] - held["train_loss"]) < 1e-3 * max(1.0, held["train_loss"])
    assert (streamed["train_size"], streamed["val_size"]) == (held["train_size"], held["val_size"]) == (243, 27)
    with pytest.raises(UsageError, match=r"more than WEIGHTMOM_MEMORY_CAP_BYTES=.*data_loading stream"):
        open_imagefolder(str(shapes), 32, "memory")   # forced into memory above the cap: refused, as before


def test_auto_holds_cifar10_mini_in_memory_and_streams_it_above_the_cap(cifar_mini: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    monkeypatch.delenv(MEMORY_CAP_ENV, raising=False)
    assert isinstance(data_loader("cifar10", str(cifar_mini))(), TensorDataset)   # a pickle set: always held
    with pytest.raises(UsageError, match="data_loading stream needs dataset imagefolder"):
        TrainConfig(dataset="cifar10", data_loading="stream")
    folder = _cifar_as_imagefolder(cifar_mini, tmp_path / "cifar-folder")
    held = open_imagefolder(str(folder), 32, "auto")
    assert isinstance(held, TensorDataset) and held.size("train") == 3728 and held.size("test") == 846
    monkeypatch.setenv(MEMORY_CAP_ENV, str(10 * 2**20))   # 10 MiB: its 14 MiB no longer fit
    streamed = open_imagefolder(str(folder), 32, "auto")
    assert isinstance(streamed, StreamingDataset) and streamed.size("train") == 3728


def _cifar_as_imagefolder(cifar_mini: Path, root: Path) -> Path:
    from weightmom.data.datasets import load_dataset

    data = load_dataset("cifar10", str(cifar_mini))
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images").numpy(), getattr(data, f"{split}_labels").tolist()
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:05d}.png", compress_level=0)
    return root


def test_the_command_line_takes_data_loading(shapes: Path, tmp_path: Path) -> None:
    from weightmom.cli import main

    out = tmp_path / "m.json"
    assert main(["train", "--quiet", "--dataset", "imagefolder", "--data-dir", str(shapes), "--epochs", "1",
                 "--device", "cpu", "--set", "data_loading=stream", "--set", "data_workers=1", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["data_loading"] == "stream" and metrics["train_size"] == 243


# -- bad images ---------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def test_a_corrupt_image_found_mid_stream_fails_the_run_naming_it(shapes: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(shapes, tmp_path / "shapes"))
    culprit = folder / "test" / "square" / "square_0007.png"   # test/ is first read after epoch 1's training
    _truncate(culprit)
    config = TrainConfig(dataset="imagefolder", data_dir=str(folder), epochs=2, device="cpu", data_loading="stream",
                         data_workers=1)
    epochs = []
    with pytest.raises(UsageError) as err:
        train(config, progress=False, report=epochs.append)
    assert str(culprit) in str(err.value) and "unreadable image" in str(err.value) and "\n" not in str(err.value)
    assert epochs == []
    with pytest.raises(UsageError, match="unreadable image"):   # in memory it is found before training, as before
        open_imagefolder(str(folder), 32, "memory")
    culprit.write_bytes(b"")
    with pytest.raises(UsageError, match=f"{culprit}: unreadable image \\(empty file\\)"):   # found by the scan
        open_imagefolder(str(folder), 32, "stream")


# -- copy once per node -------------------------------------------------------------------


def _copy_when_released(uri: str, cache: str, barrier, results) -> None:
    barrier.wait()
    path, copied = node_copy(uri, Path(cache))
    results.put((str(path), copied))


def test_two_trials_on_a_node_copy_the_data_once(shapes: Path, tmp_path: Path) -> None:
    uri, cache = shapes.as_uri(), tmp_path / "cache"
    context = multiprocessing.get_context("fork")   # three processes at once, as three trials on a node
    barrier, results = context.Barrier(3), context.Queue()
    trials = [context.Process(target=_copy_when_released, args=(uri, str(cache), barrier, results)) for _ in range(3)]
    for trial in trials:
        trial.start()
    got = [results.get(timeout=300) for _ in trials]
    for trial in trials:
        trial.join(timeout=60)
    assert sorted(copied for _, copied in got) == [False, False, True]
    assert len({path for path, _ in got}) == 1
    local = Path(got[0][0])
    assert json.loads((local / MARKER).read_text())["uri"] == uri
    assert sorted(p.relative_to(local) for p in local.rglob("*.png")) == \
        sorted(p.relative_to(shapes) for p in shapes.rglob("*.png"))
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []   # no partial copy left
    assert node_copy(uri, cache) == (local, False)   # later trials reuse it
    (local / MARKER).unlink()   # as after a copy killed part-way: not complete, so done again
    assert node_copy(uri, cache) == (local, True)


def test_data_dir_uri_trains_from_the_node_copy(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTMOM_DATA_CACHE", str(tmp_path / "cache"))
    assert local_data_dir(str(shapes)) == str(shapes)   # a path (shared storage) is used where it is
    local = Path(local_data_dir(shapes.as_uri()))
    assert local.parent == tmp_path / "cache" and (local / MARKER).is_file()
    result = train(TrainConfig(dataset="imagefolder", data_dir=shapes.as_uri(), epochs=1, device="cpu"),
                   progress=False)
    assert result.metrics["train_size"] == 243
    with pytest.raises(UsageError, match="no such folder"):
        local_data_dir((tmp_path / "nope").as_uri())
    with pytest.raises(UsageError, match=r"data_dir nosuch://bucket/x: cannot copy it") as err:
        local_data_dir("nosuch://bucket/x")
    assert "\n" not in str(err.value)


# -- in a sweep ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_fails_the_trial_with_a_corrupt_image_and_completes_the_others(shapes: Path, tmp_path: Path,
                                                                               monkeypatch) -> None:
    import shutil

    import ray
    import yaml

    from sweeps.records.results import sweep_rows
    from weightmom_sweeps.cli import main

    good, bad = (Path(shutil.copytree(shapes, tmp_path / name)) for name in ("good", "bad"))
    culprit = bad / "test" / "circle" / "circle_0003.png"
    _truncate(culprit)
    space = {"name": "stream-bad-image", "trials": 3, "concurrency": 1, "resources": {"cpu": 1, "gpu": 0},
             "early_stopping": False,
             "fixed": {"dataset": "imagefolder", "data_loading": "stream", "data_workers": 1, "model": "lenet300",
                       "epochs": 1, "batch_size": 64, "device": "cpu", "method": "dense"},
             "params": {"data_dir": {"type": "categorical", "choices": [str(good), str(bad)]},
                        "lr": {"type": "float", "low": 0.01, "high": 0.05}},
             "start_points": [{"data_dir": str(good), "lr": 0.01}, {"data_dir": str(bad), "lr": 0.01},
                              {"data_dir": str(good), "lr": 0.02}]}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    monkeypatch.chdir(tmp_path)
    try:
        main(["sweep", "space.yaml", "--out", "sweep", "--verbose", "0"])
    finally:
        ray.shutdown()
    rows = sweep_rows(tmp_path / "sweep")
    states = sorted((r["config.data_dir"] == str(bad), r["state"]) for r in rows)
    assert states == [(False, "COMPLETE"), (False, "COMPLETE"), (True, "FAILED")], rows
    failed = next(r for r in rows if r["state"] == "FAILED")
    assert str(culprit) in failed["error"] and "unreadable image" in failed["error"], failed["error"]
