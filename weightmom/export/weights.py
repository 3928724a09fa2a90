"""weights.safetensors.zst: the masked state_dict as safetensors bytes, compressed with zstd.

Layout (the safetensors format, https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N,
N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw little-endian
tensors. Pruned weights are stored as exact zeros in their dense place; zstd squeezes the zeros, which at
1-10% density is smaller than a bitmask or CSR index beside the values. Loading needs no part of this project:

    raw = zstandard.ZstdDecompressor().decompress(open(path, "rb").read())
    state = safetensors.torch.load(raw)          # or parse the header with json + numpy (docs/export.md)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64", torch.int64: "I64",
          torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
         "U8": np.uint8, "BOOL": np.bool_}


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    header: dict = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, tensor in state.items():
        data = tensor.detach().cpu().contiguous().numpy().astype(NUMPY[DTYPES[tensor.dtype]].__name__).tobytes()
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)   # the format pads the header with spaces to an 8-byte boundary
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def parse_safetensors(raw: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__", {})
    body = raw[8 + length:]
    arrays = {name: np.frombuffer(body[start:end], dtype=NUMPY[info["dtype"]]).reshape(info["shape"])
              for name, info in header.items() for start, end in [info["data_offsets"]]}
    return arrays, metadata


def write_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str], level: int = 19) -> None:
    import zstandard

    path.write_bytes(zstandard.ZstdCompressor(level=level).compress(safetensors_bytes(state, metadata)))


def read_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import zstandard

    return parse_safetensors(zstandard.ZstdDecompressor().decompress(Path(path).read_bytes()))


def dense_fp32_bytes(state: dict[str, torch.Tensor]) -> int:
    """What the model's floating-point tensors take dense in float32: the 100% every size is quoted against."""
    return sum(4 * t.numel() for t in state.values() if t.is_floating_point())
