"""One image file to the uint8 array every image dataset holds: shared by the in-memory ImageFolder
(imagefolder.py), the streamed one (streaming.py) and PIL images from a user's loader (sources.py).

Its own module so that none of those imports another for it (imagefolder.py hands large folders to
streaming.py, which must not import imagefolder.py back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from weightmom.errors import UsageError


def to_uint8(image: Image.Image, size: int) -> np.ndarray:
    """An RGB (3, size, size) uint8 array: shorter side resized to `size`, then centre-cropped."""
    square = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)


def decode(path: Path, size: int) -> np.ndarray:
    """`to_uint8` of the file at `path`; a file PIL cannot read is one UsageError line naming it."""
    try:
        with Image.open(path) as image:
            return to_uint8(image, size)
    except Exception as err:  # PIL raises many types for a bad file (OSError, SyntaxError, ValueError...)
        raise UsageError(f"{path}: unreadable image ({' '.join(f'{type(err).__name__}: {err}'.split())})") from None
