"""Minimal safetensors reading and writing on numpy arrays (no dependency beyond numpy).

The format: an 8-byte little-endian header length N, N bytes of JSON (an object mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` plus an optional
``"__metadata__"`` object of strings), then the data section, where every tensor's bytes are
stored C-contiguous and little-endian.

Writing goes through :class:`HostTensor` records, which hold a C-contiguous little-endian
numpy array together with the safetensors dtype name. That indirection lets a torch bfloat16
tensor travel as a ``uint16`` array labelled ``BF16`` without needing ``ml_dtypes``.

Reading (:func:`parse`) maps dtypes back to numpy:

* ``BF16`` → ``ml_dtypes.bfloat16`` when ml_dtypes is importable, else **float32** (exact:
  every bfloat16 value is a float32 value; the array is twice the size and its dtype differs
  from what was written).
* ``F8_*`` → the matching ``ml_dtypes`` float8 type when available, else the raw bytes as
  ``uint8`` (no lossless numpy equivalent exists).
* ``F4``, ``F6_E2M3``, ``F6_E3M2`` (packed sub-byte types) → the raw bytes as a 1-d ``uint8``
  array.
* everything else → the numpy dtype of the same name (``F32`` → float32, ``BOOL`` → bool, …).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Mapping

import numpy as np

try:  # optional: bfloat16 and float8 numpy dtypes
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None

__all__ = [
    "HostTensor",
    "dtype_name",
    "numpy_dtype",
    "host_tensor",
    "header_bytes",
    "write",
    "parse",
    "read_file",
    "HAVE_ML_DTYPES",
]

HAVE_ML_DTYPES = _ml_dtypes is not None

# numpy dtype → safetensors name (little-endian forms; byte order is normalized before lookup).
_NUMPY_TO_NAME: dict[np.dtype, str] = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
    np.dtype("complex64"): "C64",
}
if _ml_dtypes is not None:
    for _attr, _name in [
        ("bfloat16", "BF16"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
        ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
        ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
        ("float8_e8m0fnu", "F8_E8M0"),
    ]:
        if hasattr(_ml_dtypes, _attr):
            _NUMPY_TO_NAME[np.dtype(getattr(_ml_dtypes, _attr))] = _name

_NAME_TO_NUMPY: dict[str, np.dtype] = {name: dt for dt, name in _NUMPY_TO_NAME.items()}

# Bits per element of every dtype name safetensors accepts.
_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
    "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class HostTensor:
    """A tensor ready to be written: a C-contiguous little-endian array and its dtype name.

    ``array`` may have a different numpy dtype than ``dtype`` suggests when the element type
    has no numpy equivalent (e.g. torch bfloat16 carried as ``uint16`` with ``dtype="BF16"``);
    only its bytes are written. ``shape`` is the declared shape.
    """

    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray

    @property
    def nbytes(self) -> int:
        """Number of data bytes this tensor occupies in the file."""
        return int(self.array.nbytes)

    def byte_view(self) -> memoryview:
        """A zero-copy flat byte view of the data, suitable for ``file.write``."""
        return memoryview(self.array.reshape(-1).view(np.uint8))


def dtype_name(dtype: np.dtype) -> str:
    """Return the safetensors dtype name (``"F32"``, ``"BF16"``, …) for a numpy dtype.

    Raises ``TypeError`` for dtypes safetensors cannot represent (object, strings, float128…).
    """
    dt = np.dtype(dtype)
    if dt.byteorder == ">":
        dt = dt.newbyteorder("<")
    try:
        return _NUMPY_TO_NAME[dt]
    except KeyError:
        raise TypeError(f"numpy dtype {dt} has no safetensors equivalent") from None


def numpy_dtype(name: str) -> np.dtype | None:
    """Return the numpy dtype used when reading safetensors dtype ``name``, or None when the
    type has no numpy equivalent here (then :func:`parse` returns raw bytes or float32, see the
    module docstring)."""
    return _NAME_TO_NUMPY.get(name)


def host_tensor(array: np.ndarray, dtype: str | None = None) -> HostTensor:
    """Copy ``array`` into a fresh C-contiguous little-endian array and wrap it.

    The copy is always made (even when ``array`` is already contiguous), so the caller may
    mutate ``array`` afterwards. ``dtype`` overrides the safetensors name (used for torch
    bfloat16 passed as a uint16 view).
    """
    arr = np.asarray(array)
    name = dtype if dtype is not None else dtype_name(arr.dtype)
    target = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    copy = np.array(arr, dtype=target, order="C", copy=True)
    return HostTensor(name, tuple(int(d) for d in arr.shape), copy)


def header_bytes(tensors: Iterable[tuple[str, HostTensor]], metadata: Mapping[str, str] | None = None) -> bytes:
    """Build the 8-byte length prefix plus the compact JSON header for ``tensors`` (in order).

    Data offsets follow the given order without gaps. ``metadata`` values must be strings.
    The JSON is padded with spaces to a multiple of 8 bytes, as the reference writer does, so
    the data section starts 8-byte aligned.
    """
    header: dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"__metadata__ keys and values must be strings (got {k!r}: {v!r})")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, t in tensors:
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        if name in header:
            raise ValueError(f"duplicate tensor name {name!r}")
        end = offset + t.nbytes
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write(out: BinaryIO, tensors: list[tuple[str, HostTensor]], metadata: Mapping[str, str] | None = None) -> int:
    """Stream a safetensors file to the binary file object ``out``, tensor by tensor.

    Nothing is concatenated in memory: each tensor's buffer is written directly
    (``out.write(memoryview)``). Returns the number of bytes written.
    """
    head = header_bytes(tensors, metadata)
    out.write(head)
    total = len(head)
    for _, t in tensors:
        if t.nbytes:
            out.write(t.byte_view())
            total += t.nbytes
    return total


def _decode(name: str, info: object, data: memoryview, copy: bool, decode: bool = True) -> np.ndarray | None:
    if not isinstance(info, dict):
        raise ValueError(f"tensor {name!r}: entry is not a JSON object")
    dtype = info.get("dtype")
    shape = info.get("shape")
    offsets = info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _BITS:
        raise ValueError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"tensor {name!r}: bad shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= len(data)):
        raise ValueError(f"tensor {name!r}: bad data_offsets {offsets!r} (data section is {len(data)} bytes)")
    count = 1
    for d in shape:
        count *= d
    begin, end = offsets
    if count * _BITS[dtype] != (end - begin) * 8:
        raise ValueError(f"tensor {name!r}: {end - begin} bytes do not hold {dtype} {shape}")
    if not decode:
        return None
    raw = np.frombuffer(data[begin:end], dtype=np.uint8)
    dt = _NAME_TO_NUMPY.get(dtype)
    if dt is not None:
        arr = raw.view(dt).reshape(shape)
        return arr.copy() if copy else arr
    if dtype == "BF16":  # no ml_dtypes: widen to float32 exactly (bf16 is the top half of f32)
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return raw.copy() if copy else raw  # float8 without ml_dtypes, F4/F6: raw bytes


def parse(buffer: bytes | bytearray | memoryview, with_metadata: bool = False, decode: bool = True):
    """Parse a whole safetensors file held in memory.

    Returns ``{name: ndarray}`` in header order, or
    ``(tensors, metadata)`` when ``with_metadata`` is true (``metadata`` is the
    ``__metadata__`` dict, empty when absent). See the module docstring for the dtype mapping.
    Raises ``ValueError`` on a malformed file.

    When ``buffer`` is writable (a ``bytearray``), the arrays are zero-copy views into it (no
    second copy of the data); a read-only buffer (``bytes``) is copied so the arrays are
    writable either way. ``decode=False`` only validates the header and the data offsets (the
    values of the result are None).
    """
    view = memoryview(buffer).cast("B")
    if len(view) < 8:
        raise ValueError(f"not a safetensors file: {len(view)} bytes, shorter than the 8-byte prefix")
    (n,) = struct.unpack("<Q", view[:8])
    if 8 + n > len(view):
        raise ValueError(f"header length {n} exceeds the file ({len(view)} bytes)")
    try:
        header = json.loads(bytes(view[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"bad safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data = view[8 + n:]
    copy = view.readonly
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("safetensors __metadata__ is not an object of strings")
    tensors = {name: _decode(name, info, data, copy, decode) for name, info in header.items()}
    return (tensors, dict(metadata)) if with_metadata else tensors


def read_file(path, with_metadata: bool = False):
    """Read a safetensors file from ``path``; same result as :func:`parse`."""
    with open(path, "rb") as f:
        buf = bytearray(f.seek(0, 2))
        f.seek(0)
        f.readinto(buf)
    return parse(buf, with_metadata=with_metadata)
