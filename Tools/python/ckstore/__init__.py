"""ckstore: push training checkpoints into a ckstore store without stalling training, and read
snapshots and their averages (LAWA, SWA, EMA) back as numpy arrays or torch tensors.

    import ckstore

    with ckstore.CheckpointPusher("my-run", store="/data/ckstore", interval=1000) as pusher:
        for step in range(1, n_steps + 1):
            loss = train_step()
            pusher.maybe_push(step, model.state_dict, metrics={"loss": loss})  # a callable: built only on push steps
    # leaving the block waits for the last push and raises any background error

    avg = ckstore.load(lawa=(6, 1000), at=70000, run="my-run", store="/data/ckstore", framework="torch")
    model.load_state_dict(avg)

Modules, one concern each: :mod:`ckstore.push` (the background pusher), :mod:`ckstore.load`
(reading, metrics), :mod:`ckstore.flatten` (state dicts ⇄ dotted names, structure and exact
scalars in ``__metadata__``), :mod:`ckstore.host` (host copies), :mod:`ckstore.torch_interop`
(dtypes, device copies, DTensor, zero-copy loading), :mod:`ckstore.distributed` (which rank
pushes), :mod:`ckstore.cli` (finding and running the binary), :mod:`ckstore.safetensors_io`
(the file format on numpy). Trainer callbacks: :mod:`ckstore.hf` (transformers) and
:mod:`ckstore.lightning` (PyTorch Lightning), imported on demand.

The ckstore binary is ``binary=`` if given, else ``$CKSTORE_BIN``, else ``ckstore`` on PATH.
The store is ``store=`` if given (passed as ``--store``), else whatever ckstore defaults to
(``$CKSTORE_DIR``, then ``./.ckstore``).
"""

from __future__ import annotations

from . import safetensors_io
from .cli import find_binary, put_supports_dirs, put_supports_parts
from .distributed import part_name
from .errors import CKStoreError, PushError, UnsupportedByBinary
from .flatten import flatten_state_dict, unflatten
from .host import snapshot_to_host
from .load import load, record_metric
from .push import CheckpointPusher, Pusher, PushStats

__version__ = "0.1.0"

__all__ = [
    "CheckpointPusher",
    "Pusher",
    "PushStats",
    "PushError",
    "CKStoreError",
    "UnsupportedByBinary",
    "load",
    "record_metric",
    "flatten_state_dict",
    "unflatten",
    "snapshot_to_host",
    "find_binary",
    "put_supports_parts",
    "put_supports_dirs",
    "part_name",
    "safetensors_io",
]
