"""torch interop: dtype names, device-to-host copies, distributed tensors, zero-copy loading.

Nothing here imports torch at module import time: torch is optional. A value is a torch tensor
only when torch has already been imported by the caller (``sys.modules``).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import numpy as np

from .safetensors_io import HostTensor

__all__ = ["is_torch_tensor", "is_distributed_tensor", "torch_dtype", "torch_scalar_dtype_name",
           "materialize", "to_host", "tensor_from_bytes", "metric_value"]

# torch dtype attribute → safetensors dtype name (attributes missing from older torch skipped).
_TORCH_TO_NAME = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "uint16": "U16", "uint32": "U32", "uint64": "U64", "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
}
# Same-size integer types used to reach numpy for dtypes numpy lacks (or torch cannot export).
_CARRIER = {"BF16": ("int16", np.uint16), "F8_E4M3": ("uint8", np.uint8), "F8_E5M2": ("uint8", np.uint8),
            "F8_E4M3FNUZ": ("uint8", np.uint8), "F8_E5M2FNUZ": ("uint8", np.uint8),
            "F8_E8M0": ("uint8", np.uint8), "U16": ("int16", np.uint16), "U32": ("int32", np.uint32),
            "U64": ("int64", np.uint64)}


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (False without importing torch when the caller
    never imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def is_distributed_tensor(value: Any) -> bool:
    """A DTensor (FSDP2, tensor parallel) or a legacy ShardedTensor."""
    if not is_torch_tensor(value):
        return False
    return type(value).__name__ in ("DTensor", "ShardedTensor") or hasattr(value, "full_tensor") \
        or hasattr(value, "local_shards")


def torch_dtype(name: str):
    """The torch dtype for a safetensors dtype name (``"BF16"`` → ``torch.bfloat16``); raises
    ``TypeError`` when this torch has none."""
    import torch

    for attr, n in _TORCH_TO_NAME.items():
        if n == name and hasattr(torch, attr):
            return getattr(torch, attr)
    raise TypeError(f"safetensors dtype {name} has no torch equivalent in torch {torch.__version__}")


def torch_scalar_dtype_name(t) -> str:
    """The safetensors dtype name of a torch tensor's dtype (``TypeError`` when none)."""
    name = str(t.dtype).removeprefix("torch.")
    try:
        return _TORCH_TO_NAME[name]
    except KeyError:
        raise TypeError(f"torch dtype {t.dtype} has no safetensors equivalent") from None


def materialize(t, mode: str):
    """A plain tensor for a DTensor/ShardedTensor ``t``.

    ``mode="full"``: the whole tensor (``DTensor.full_tensor()``; a ShardedTensor is gathered to
    rank 0, other ranks get None). These are collectives: every rank must call them, in the same
    order. ``mode="local"``: this rank's shard (``to_local()`` / ``local_tensor()``), no
    communication. Plain tensors are returned unchanged.
    """
    if hasattr(t, "full_tensor") and hasattr(t, "to_local"):  # DTensor
        return t.full_tensor() if mode == "full" else t.to_local()
    if hasattr(t, "local_shards"):  # ShardedTensor
        if mode != "full":
            return t.local_tensor()
        import torch
        import torch.distributed as dist

        rank = dist.get_rank()
        out = torch.empty(tuple(t.size()), dtype=t.dtype) if rank == 0 else None
        t.gather(dst=0, out=out)
        return out
    return t


def _host_tensor(cpu) -> HostTensor:
    """Wrap a contiguous CPU tensor (owned by us) as a HostTensor without another copy."""
    name = torch_scalar_dtype_name(cpu)
    shape = tuple(int(d) for d in cpu.shape)
    if name in _CARRIER:
        import torch

        carrier, np_type = _CARRIER[name]
        arr = cpu.view(getattr(torch, carrier)).numpy().view(np_type)
    else:
        arr = cpu.numpy()  # shares memory with the fresh CPU copy
        if sys.byteorder == "big":  # pragma: no cover
            arr = arr.astype(arr.dtype.newbyteorder("<"))
    return HostTensor(name, shape, arr)


def _numpy_copy(t) -> HostTensor:
    """One single-threaded copy of a contiguous CPU tensor through numpy (a plain memcpy).

    torch's own ``copy_`` runs on its intra-op thread pool; on a machine whose cores are busy
    (the training loop's own threads, other jobs) that was measured 3-10x slower than this."""
    name = torch_scalar_dtype_name(t)
    if name in _CARRIER:
        import torch

        carrier, np_type = _CARRIER[name]
        arr = np.array(t.view(getattr(torch, carrier)).numpy(), order="C", copy=True).view(np_type)
    else:
        arr = np.array(t.numpy(), order="C", copy=True)
        if sys.byteorder == "big":  # pragma: no cover
            arr = arr.astype(arr.dtype.newbyteorder("<"))
    return HostTensor(name, tuple(int(d) for d in t.shape), arr)


def to_host(tensors: Iterable[tuple[str, Any]]) -> list[tuple[str, HostTensor]]:
    """Copy torch tensors to fresh contiguous host memory, one copy per tensor.

    Contiguous CPU tensors are copied through numpy (one memcpy each, see :func:`_numpy_copy`);
    other CPU tensors (non-contiguous, conjugate/negative views) with one ``copy_`` into a new
    contiguous tensor. CUDA tensors are copied into pinned (page-locked) host buffers with
    ``non_blocking=True``, all queued before one synchronization per device, so the
    device-to-host transfers overlap. Other devices use ``.to("cpu")``. After this returns the
    caller may change the tensors.
    """
    import torch

    out: list[tuple[str, Any]] = []
    cuda_devices = set()
    with torch.no_grad():
        for name, t in tensors:
            t = t.detach()
            try:
                torch_scalar_dtype_name(t)
            except TypeError as e:
                raise TypeError(f"state dict entry {name!r}: {e}") from None
            if t.device.type == "cpu" and t.is_contiguous() and not t.is_conj() and not t.is_neg():
                out.append((name, _numpy_copy(t)))
                continue
            if t.device.type == "cpu":
                copy = torch.empty(t.shape, dtype=t.dtype)
                copy.copy_(t)
            elif t.device.type == "cuda":
                copy = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                copy.copy_(t, non_blocking=True)
                cuda_devices.add(t.device)
            else:
                copy = t.to("cpu").contiguous()
            out.append((name, copy))
        for device in cuda_devices:
            torch.cuda.current_stream(device).synchronize()
    return [(name, v if isinstance(v, HostTensor) else _host_tensor(v)) for name, v in out]


def tensor_from_bytes(buffer: bytearray, base, begin: int, end: int, dtype_name: str,
                      shape: list[int]):
    """A torch tensor of ``dtype_name``/``shape`` over ``buffer[begin:end]``.

    ``base`` is ``torch.frombuffer(buffer, dtype=torch.uint8)`` (made once per file). The result
    is a zero-copy view when the bytes are aligned for the element type, else a copy. Dtypes
    torch lacks (F4, F6_*) come back as their raw bytes (1-d ``uint8``).
    """
    import torch

    try:
        dt = torch_dtype(dtype_name)
    except TypeError:
        return base[begin:end].clone()
    if begin == end:
        return torch.empty(shape, dtype=dt)
    raw = base[begin:end]
    itemsize = torch.empty((), dtype=dt).element_size()
    if raw.data_ptr() % itemsize != 0:
        raw = raw.clone()  # fresh, aligned storage
    return raw.view(dt).reshape(shape)


def metric_value(value: Any) -> float:
    """A metric as a Python float: torch tensors of any dtype and device (bf16, 0-d, 1-element)
    via ``.item()``, numpy scalars/arrays of one element, Python numbers."""
    if is_torch_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"a metric must be one number, not a tensor of shape {tuple(value.shape)}")
        return float(value.detach().float().item())
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.size != 1:
            raise ValueError(f"a metric must be one number, not an array of shape {arr.shape}")
        return float(arr.reshape(()).astype(np.float64))
    return float(value)
