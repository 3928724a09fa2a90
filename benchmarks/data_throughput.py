"""Images per second of the in-memory and the streaming ImageFolder paths, and the training step each feeds.

    PYTHONPATH=$PWD python benchmarks/data_throughput.py                    # 3 x 1000 PNGs, 64 px -> 32 px
    PYTHONPATH=$PWD python benchmarks/data_throughput.py --workers 4 --device cuda --models resnet20

It writes an ImageFolder of drawn shapes (examples/make_shapes.py) and prints, side by side:
- load: seconds until the first batch can be made (memory: decode everything; stream: start workers);
- images/s: one epoch of augmented train batches on the device, nothing else done with them;
- for each model, steps/s of its SGD step fed by pre-made batches (the step alone), by the in-memory
  path and by the streaming path, and the stream's share of the step alone: near 100% means the
  workers keep the step fed. Measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from weightmom.data.datasets import iterate_batches
from weightmom.data.imagefolder import open_imagefolder
from weightmom.models import create_model
from weightmom.training import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_shapes import make_shapes  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="ImageFolder to use or write (default: a temporary folder)")
    p.add_argument("--per-class", type=int, default=1000, help="training images per class (3 classes)")
    p.add_argument("--source-size", type=int, default=64, help="side of the PNGs written")
    p.add_argument("--image-size", type=int, default=32, help="side they are resized to")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="streaming decode processes")
    p.add_argument("--models", default="lenet300,resnet20", help="comma-separated built-in models")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=40, help="timed steps per feeding")
    p.add_argument("--device", default="auto")
    return p.parse_args()


def images_per_second(dataset, batch_size: int) -> float:
    """One epoch of augmented, normalised train batches delivered on the device."""
    start, n = time.perf_counter(), 0
    for images, _ in iterate_batches(dataset, "train", batch_size, shuffle=True, generator=torch.Generator()):
        n += images.shape[0]
    _sync(images.device)
    return n / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(model: torch.nn.Module, feed, steps: int, device: torch.device) -> float:
    """SGD steps per second on the batches `feed()` yields (a fresh iterator each epoch), after 3 untimed."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches, done, start = feed(), -3, 0.0
    while done < steps:
        try:
            x, y = next(batches)
        except StopIteration:
            batches = feed()
            continue
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == 0:
            _sync(device)
            start = time.perf_counter()
    _sync(device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    root = Path(args.root or tempfile.mkdtemp(prefix="throughput-")) / "shapes"
    if not (root / "train").is_dir():
        make_shapes(root, train=args.per_class, test=10, size=args.source_size)
    start = time.perf_counter()
    memory = open_imagefolder(str(root), args.image_size, "memory").to(device)
    memory_load = time.perf_counter() - start
    start = time.perf_counter()
    stream = open_imagefolder(str(root), args.image_size, "stream", device, args.workers).to(device)
    _ = stream.mean   # the statistics pass starts the workers and decodes the training images once (< 10k)
    stream_load = time.perf_counter() - start
    n = memory.size("train")
    print(f"{n} train PNGs {args.source_size}px -> {args.image_size}px, batch {args.batch_size}, device {device}, "
          f"{args.workers} stream workers, {torch.get_num_threads()} torch threads")
    print(f"{'':28}{'memory':>12}{'stream':>12}{'stream/memory':>15}")
    rate_m, rate_s = images_per_second(memory, args.batch_size), images_per_second(stream, args.batch_size)
    print(f"{'load (s)':28}{memory_load:12.2f}{stream_load:12.2f}")
    print(f"{'images/s (batches only)':28}{rate_m:12.0f}{rate_s:12.0f}{rate_s / rate_m:14.1%}")
    fixed = list(iterate_batches(memory, "train", args.batch_size, shuffle=True, generator=torch.Generator()))
    feeds = {"pre-made": lambda: iter(fixed)}
    for name, data in (("memory", memory), ("stream", stream)):
        feeds[name] = lambda data=data: iter(iterate_batches(data, "train", args.batch_size, shuffle=True,
                                                             generator=torch.Generator()))
    for name in args.models.split(","):
        model = create_model(name, memory.input_shape, memory.num_classes, width=args.width).to(device)
        rates = {feed: steps_per_second(model, make, args.steps, device) for feed, make in feeds.items()}
        label = f"{name} steps/s (alone {rates['pre-made']:.1f})"
        print(f"{label:28}{rates['memory']:12.1f}{rates['stream']:12.1f}"
              f"{rates['stream'] / rates['memory']:14.1%}   stream feeds {rates['stream'] / rates['pre-made']:.0%} "
              "of the step alone")
    stream.close()


if __name__ == "__main__":
    main()
