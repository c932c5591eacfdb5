"""Reading snapshots and averages back (``ckstore get … -o -``), and recording metrics."""

from __future__ import annotations

import json
import numbers
import os
import struct
from typing import Any, Mapping, Sequence

from . import safetensors_io
from .cli import base_command, read_stdout
from .cli import run as run_command
from .flatten import unflatten
from .push import format_metric
from .torch_interop import tensor_from_bytes

__all__ = ["load", "record_metric", "parse_torch"]


def _query_args(lawa, swa, ema, mean, weights, at, run_name) -> list[str]:
    def spec(value, keys) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            return ",".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, (tuple, list)):
            return ",".join(f"{k}={v}" for k, v in zip(keys, value) if v is not None)
        if isinstance(value, numbers.Real):
            return f"{keys[0]}={value}"
        raise TypeError(f"cannot express {value!r} as a query option")

    args: list[str] = []
    if run_name is not None:
        args += ["--run", run_name]
    if lawa is not None:
        args += ["--lawa", spec(lawa, ("k", "stride"))]
    if swa is not None:
        args += ["--swa", spec(swa, ("start", "stride"))]
    if ema is not None:
        args += ["--ema", spec(ema, ("decay", "start", "stride"))]
    if mean is not None:
        args += ["--mean", mean if isinstance(mean, str) else ",".join(mean)]
    if weights is not None:
        args += ["--weights", weights if isinstance(weights, str) else ",".join(str(w) for w in weights)]
    if at is not None:
        args += ["--at", str(int(at))]
    return args


def parse_torch(buffer: bytearray, device: Any = "cpu"):
    """Parse a safetensors file held in a ``bytearray`` into torch tensors with the stored
    dtypes (bf16 stays bf16, F8_* become ``torch.float8_*``). Returns ``(tensors, metadata)``.

    On the CPU the tensors are zero-copy views into ``buffer`` (which they keep alive) when the
    bytes are aligned for the element type, else copies; on another device, one copy each.
    The header is validated by :func:`safetensors_io.parse` first (offsets, sizes, dtypes).
    """
    import torch

    _, metadata = safetensors_io.parse(buffer, with_metadata=True, decode=False)
    (n,) = struct.unpack("<Q", bytes(buffer[:8]))
    header = json.loads(bytes(buffer[8:8 + n]).decode("utf-8"))
    header.pop("__metadata__", None)
    base = torch.frombuffer(buffer, dtype=torch.uint8) if len(buffer) else torch.empty(0, dtype=torch.uint8)
    start = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        t = tensor_from_bytes(buffer, base, start + begin, start + end, info["dtype"], info["shape"])
        out[name] = t if str(device) == "cpu" else t.to(device)
    return out, metadata


def load(
    ref: str | None = None,
    *,
    run: str | None = None,
    at: int | None = None,
    lawa: Any = None,
    swa: Any = None,
    ema: Any = None,
    mean: Sequence[str] | str | None = None,
    weights: Sequence[float] | str | None = None,
    store: str | os.PathLike | None = None,
    binary: str | os.PathLike | None = None,
    no_cache: bool = False,
    with_metadata: bool = False,
    framework: str = "numpy",
    device: Any = "cpu",
    nested: bool = False,
):
    """Read a stored snapshot, or the result of an averaging query.

    ``load("run@70000")`` (or ``"run@latest"``, ``"sha256:…"``, a digest prefix) returns the
    snapshot; ``load(lawa=(6, 1000), at=70000, run="r")`` the LAWA average of the 6 snapshots
    70000, 69000, …, 65000. Query options: ``lawa=(K, NU)`` or ``"k=K,stride=NU"``;
    ``swa=(START, NU)``/dict/str; ``ema=DECAY``/``(DECAY, START, NU)``/dict/str;
    ``mean=[REF, …]`` with optional ``weights``. Runs ``ckstore get … -o -`` and parses its
    output in memory.

    ``framework="numpy"`` (default): numpy arrays; BF16 as ``ml_dtypes.bfloat16`` when
    ml_dtypes is installed, else widened (exactly) to float32 (see :mod:`ckstore.safetensors_io`).
    ``framework="torch"``: torch tensors with the stored dtypes (bf16 stays bf16), zero-copy
    views of the downloaded bytes on the CPU, moved to ``device`` otherwise.

    Returns ``{name: tensor}`` (flattened names as pushed: a pushed ``model.state_dict()``
    goes straight into ``model.load_state_dict``). ``nested=True`` returns the structure that
    was pushed instead (:func:`ckstore.unflatten`, with plain leaves such as optimizer
    hyperparameters restored). ``with_metadata=True`` returns ``(result, metadata)``. Raises
    :class:`CKStoreError` when ckstore fails.
    """
    if framework not in ("numpy", "torch"):
        raise ValueError(f"framework must be 'numpy' or 'torch', not {framework!r}")
    query = _query_args(lawa, swa, ema, mean, weights, at, None)
    if ref is not None and query:
        raise ValueError("give either a REF or query options, not both")
    if ref is None and not query:
        raise ValueError("give a REF (RUN@STEP, …) or a query (lawa=, swa=, ema=, mean=)")
    cmd = base_command(binary, store) + ["get"]
    if ref is not None:
        if run is not None:
            raise ValueError("run= applies to queries; write the REF as RUN@STEP")
        cmd += [ref]
        what = f"ckstore get {ref}"
    else:
        cmd += _query_args(lawa, swa, ema, mean, weights, at, run) + (["--no-cache"] if no_cache else [])
        what = "ckstore get " + " ".join(query)
    cmd += ["-o", "-", "--quiet"]
    data = read_stdout(cmd, what)
    if framework == "torch":
        tensors, metadata = parse_torch(data, device)
    else:
        tensors, metadata = safetensors_io.parse(data, with_metadata=True)
    result = unflatten(tensors, metadata, framework=framework) if nested else tensors
    return (result, metadata) if with_metadata else result


def record_metric(
    run: str,
    step: int,
    variant: str = "raw",
    *,
    store: str | os.PathLike | None = None,
    binary: str | os.PathLike | None = None,
    metrics: Mapping[str, Any] | None = None,
    **values: Any,
) -> None:
    """Record metric values for RUN@STEP: ``ckstore metric RUN@STEP NAME=VALUE… --variant V``.

    Values come from keyword arguments (``val_loss=0.3``) and/or ``metrics`` (for names that are
    not Python identifiers); torch tensors (any dtype, 0-d or one element) are accepted.
    ``variant`` defaults to ``"raw"``; averaged evaluations use e.g. ``"lawa-k6-s1000"``.
    Raises :class:`CKStoreError` when ckstore fails.
    """
    all_values = {**(metrics or {}), **values}
    if not all_values:
        raise ValueError("record_metric needs at least one NAME=VALUE")
    cmd = base_command(binary, store) + ["metric", f"{run}@{int(step)}"]
    cmd += [format_metric(k, v) for k, v in all_values.items()]
    cmd += ["--variant", variant]
    run_command(cmd, f"ckstore metric {run}@{step}")
