"""Write a small ImageFolder of drawn shapes (circle, square, triangle): data to try your own model on.

    python examples/make_shapes.py runs/shapes              # 150 train + 50 test PNGs per class, 40x40
    python examples/make_shapes.py DIR --train 30 --val 10 --test 10 --size 24 --seed 1

The layout is torchvision's ImageFolder: DIR/train/<class>/*.png and DIR/test/<class>/*.png (and
DIR/val/<class>/*.png with --val, which weightmom then uses instead of holding out part of train/). Shapes
vary in size, position and colour, so a model has something to learn; the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def draw(shape: str, size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 120) for _ in range(3))
    colour = tuple(rng.randrange(130, 256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    side = rng.uniform(0.35, 0.8) * size
    x, y = rng.uniform(0, size - side), rng.uniform(0, size - side)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((x, y, x + side, y + side), fill=colour)
    elif shape == "square":
        pen.rectangle((x, y, x + side, y + side), fill=colour)
    else:
        pen.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=colour)
    return image


def make_shapes(root: str | Path, train: int = 150, test: int = 50, size: int = 40, seed: int = 0,
                val: int = 0) -> Path:
    """Write the folder (files already there are overwritten) and return its root."""
    root, rng = Path(root), random.Random(seed)
    for split, count in (("train", train), ("val", val), ("test", test)):
        if count == 0:
            continue
        for shape in CLASSES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(shape, size, rng).save(folder / f"{shape}_{i:04d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write (created if missing)")
    parser.add_argument("--train", type=int, default=150, help="images per class in train/")
    parser.add_argument("--val", type=int, default=0, help="images per class in val/ (0: no val/ folder)")
    parser.add_argument("--test", type=int, default=50, help="images per class in test/")
    parser.add_argument("--size", type=int, default=40, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = make_shapes(args.root, args.train, args.test, args.size, args.seed, args.val)
    print(f"wrote {len(CLASSES)} classes x ({args.train} train + {args.val} val + {args.test} test) PNGs to {root}")


if __name__ == "__main__":
    main()
