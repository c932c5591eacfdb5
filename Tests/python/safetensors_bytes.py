"""Small safetensors files built in memory, for the directory-snapshot and parts tests."""

from __future__ import annotations

import json
import random
import struct


def safetensors(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None) -> bytes:
    """A safetensors file holding `tensors` (name -> (dtype, shape, raw bytes)) in order, with
    `metadata` as `__metadata__` when given."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def floats(n: int, seed: int) -> bytes:
    """`n` little-endian float32 values drawn uniformly from [-1, 1) with `seed`."""
    r = random.Random(seed)
    return struct.pack(f"<{n}f", *(r.uniform(-1, 1) for _ in range(n)))
