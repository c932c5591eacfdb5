"""One rank of a 2-process gloo job for test_torch_distributed.py (not a test module).

    python3 dist_worker.py SCENARIO STORE BINARY      (with MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE)

SCENARIO is a comma-separated list of ``ddp`` (DDP training, rank-0 pushes every 2 steps),
``dtensor`` (a DTensor and a ShardedTensor state pushed in full by rank 0), ``parts`` (each rank
pushes its DTensor shard as a part), run in that order in one process group (one start-up of
torch for several scenarios). Prints one JSON line ``{scenario: what this rank saw, "rank": R}``;
exits non-zero on any error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Tools" / "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import ckstore  # noqa: E402


def ddp(store: str, binary: str) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + dist.get_rank())  # each rank its own data
    results = {}
    with ckstore.CheckpointPusher("ddp", store=store, binary=binary, interval=2) as pusher:
        assert pusher.placement.mode == "rank0", pusher.placement
        for step in range(1, 7):
            loss = model(torch.randn(4, 6, generator=g)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            future = pusher.maybe_push(step, model.module.state_dict, metrics={"loss": loss.detach()})
            if future is not None:
                results[step] = future.result()
    weights = {k: v.tolist() for k, v in model.module.state_dict().items()}
    return {"results": results, "weights": weights}


def dtensor_state():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    full = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    return {
        "w": distribute_tensor(full, mesh, [Shard(0)]),
        "b": distribute_tensor(full[:, 0].clone().bfloat16(), mesh, [Shard(0)]),
        "plain": torch.ones(3),
    }


def sharded_tensor():
    """A legacy ShardedTensor of shape (6, 4), rows split across the ranks, filled with rank + 1;
    None when this torch no longer has it."""
    try:
        from torch.distributed._shard import sharded_tensor as st
        from torch.distributed._shard.sharding_spec import ChunkShardingSpec
    except ImportError:
        return None
    spec = ChunkShardingSpec(dim=0, placements=[f"rank:{r}/cpu" for r in range(dist.get_world_size())])
    t = st.empty(spec, 6, 4)
    with torch.no_grad():
        t.local_tensor().fill_(dist.get_rank() + 1)
    return t


def dtensor(store: str, binary: str) -> dict:
    def state():
        out = dtensor_state()
        legacy = sharded_tensor()
        if legacy is not None:
            out["legacy"] = legacy
        return out

    with ckstore.CheckpointPusher("dt", store=store, binary=binary) as pusher:
        result = pusher.push(1, state).result()
    return {"result": result}


def parts(store: str, binary: str) -> dict:
    with ckstore.CheckpointPusher("parts", store=store, binary=binary, per_rank=True) as pusher:
        assert pusher.placement.mode == "parts", pusher.placement
        state = dtensor_state()
        result = pusher.push(1, state).result()
    return {"result": result, "local": state["w"].to_local().tolist()}


def main() -> int:
    scenario, store, binary = sys.argv[1:4]
    dist.init_process_group("gloo")
    try:
        scenarios = {"ddp": ddp, "dtensor": dtensor, "parts": parts}
        out = {name: scenarios[name](store, binary) for name in scenario.split(",")}
        out["rank"] = dist.get_rank()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
