"""Which rank pushes what under ``torch.distributed``.

Modes (chosen by :class:`ckstore.CheckpointPusher` from its ``rank``/``world_size``/``per_rank``
arguments):

* ``single`` — no process group and no rank arguments: this process pushes whole snapshots.
* ``rank0`` — the default when ``torch.distributed`` is initialized and no rank arguments are
  given: every rank calls ``push``/``maybe_push`` (so collectives such as ``DTensor.full_tensor()``
  run everywhere), rank 0 pushes the full state and the other ranks' ``push`` returns a completed
  future whose result is None. This is what DDP and FSDP users need.
* ``parts`` — ``world_size > 1`` given (or ``per_rank=True`` with an initialized process group):
  each rank pushes its own state (DTensor values as their local shards) as part
  ``rank-{rank:05d}-of-{world:05d}.safetensors`` of the snapshot, with
  ``ckstore put --parts WORLD --path PART``; the snapshot appears when all parts are in.
  Needs a ckstore with ``put --parts`` (issue 11).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["Placement", "resolve", "part_name", "dist_initialized"]


def dist_initialized() -> bool:
    """Whether ``torch.distributed`` has been imported and a default process group exists."""
    if "torch" not in sys.modules:
        return False
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return False
    return dist.is_available() and dist.is_initialized()


def part_name(rank: int, world_size: int) -> str:
    """The path of rank ``rank``'s part inside a snapshot: ``rank-00003-of-00008.safetensors``."""
    return f"rank-{rank:05d}-of-{world_size:05d}.safetensors"


@dataclass(frozen=True)
class Placement:
    """This process's role: ``mode`` (``single``/``rank0``/``parts``), ``rank``, ``world_size``."""

    mode: str
    rank: int
    world_size: int

    @property
    def pushes(self) -> bool:
        """Whether this process runs ``ckstore put`` (False for ranks other than 0 in ``rank0``)."""
        return self.mode != "rank0" or self.rank == 0

    @property
    def materialize_mode(self) -> str:
        """How distributed tensors are turned into plain ones: ``full`` or ``local``."""
        return "local" if self.mode == "parts" else "full"


def resolve(rank: int | None, world_size: int | None, per_rank: bool) -> Placement:
    """Decide the placement from the pusher's arguments and the process group (see the module
    docstring). Raises ``ValueError`` for inconsistent arguments."""
    initialized = dist_initialized()
    if initialized:
        import torch.distributed as dist

        group_rank, group_world = dist.get_rank(), dist.get_world_size()
    else:
        group_rank, group_world = 0, 1
    if world_size is None and rank is None:
        if per_rank:
            if not initialized:
                raise ValueError("per_rank=True needs rank= and world_size= or an initialized torch.distributed")
            return Placement("parts" if group_world > 1 else "single", group_rank, group_world)
        return Placement("rank0" if initialized and group_world > 1 else "single", group_rank, group_world)
    if world_size is None:
        world_size = group_world
    if rank is None:
        rank = group_rank
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
    return Placement("parts" if world_size > 1 else "single", rank, world_size)
