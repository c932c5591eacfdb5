"""Host copies of a state dict: flatten, materialize distributed tensors, copy to host memory."""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np

from .flatten import DEFAULT_EXACT_NAMES, flatten_state_dict, is_number
from .safetensors_io import HostTensor, host_tensor
from .torch_interop import is_distributed_tensor, is_torch_tensor, materialize, to_host

__all__ = ["snapshot_to_host", "flatten_and_materialize"]


def _scalar_array(v: Any) -> np.ndarray:
    if isinstance(v, np.generic):
        return np.asarray(v)
    if isinstance(v, bool):
        return np.asarray(v, dtype=np.bool_)
    if isinstance(v, numbers.Integral):
        return np.asarray(v, dtype=np.int64)
    if isinstance(v, numbers.Real):
        return np.asarray(v, dtype=np.float64)
    raise TypeError(f"unsupported scalar {v!r}")


def _numpy_host(name: str, value: Any) -> HostTensor:
    if is_number(value) and not isinstance(value, np.ndarray):
        return host_tensor(_scalar_array(value))
    try:
        return host_tensor(np.asarray(value))
    except TypeError as e:
        raise TypeError(f"state dict entry {name!r}: {e}") from None


def flatten_and_materialize(state: Mapping[str, Any], mode: str = "full",
                            exact_names=DEFAULT_EXACT_NAMES) -> tuple[dict[str, Any], dict[str, str]]:
    """Flatten ``state`` and turn DTensor/ShardedTensor values into plain tensors.

    ``mode="full"``: whole tensors (collectives: call on every rank, in the same order; with a
    ShardedTensor, ranks other than 0 get None values). ``mode="local"``: this rank's shards.
    """
    tensors, metadata = flatten_state_dict(state, exact_names=exact_names)
    for name, value in tensors.items():
        if is_distributed_tensor(value):
            tensors[name] = materialize(value, mode)
    return tensors, metadata


def snapshot_to_host(state: Mapping[str, Any], mode: str = "full", exact_names=DEFAULT_EXACT_NAMES
                     ) -> tuple[list[tuple[str, HostTensor]], dict[str, str]]:
    """Flatten ``state`` and copy every tensor to host memory; returns ``(tensors, metadata)``.

    After this returns, the caller's arrays/tensors may change without affecting the result.
    torch tensors are copied by :func:`ckstore.torch_interop.to_host` (one copy each; pinned
    staging and ``non_blocking`` on CUDA), numpy values by :func:`safetensors_io.host_tensor`.
    """
    tensors, metadata = flatten_and_materialize(state, mode, exact_names)
    return host_copies(tensors), metadata


def host_copies(tensors: Mapping[str, Any]) -> list[tuple[str, HostTensor]]:
    """Host copies of already flattened, materialized tensors, in order."""
    torch_items = [(n, v) for n, v in tensors.items() if is_torch_tensor(v)]
    copied = dict(to_host(torch_items)) if torch_items else {}
    return [(n, copied[n] if n in copied else _numpy_host(n, v)) for n, v in tensors.items()]
