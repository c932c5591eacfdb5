"""The pusher under torch.distributed: 2 processes on the gloo backend (CPU), each running
dist_worker.py. Rank 0 pushes by default (DDP, DTensor in full); per-rank parts need a ckstore
with ``put --parts`` (issue 11) and skip, saying so, when the binary lacks it."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import ckstore as ck  # noqa: E402  (`ckstore` is the CLI fixture here)

WORKER = Path(__file__).resolve().parent / "dist_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(scenario: str, store: str, binary: str, world: int = 2) -> list[dict]:
    """Start ``world`` ranks of ``scenario``; return each rank's JSON line (rank order)."""
    env_base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), scenario, store, binary],
                              env={**env_base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    outs = []
    try:
        for r, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, f"rank {r} exited {p.returncode}:\n{err[-3000:]}"
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return sorted(outs, key=lambda o: o["rank"])


@pytest.fixture(scope="module")
def rank0_job(ckstore_bin, tmp_path_factory):
    """One 2-rank job running the ddp and dtensor scenarios into one store: (store, r0, r1)."""
    store = str(tmp_path_factory.mktemp("dist") / "store")
    scenarios = "ddp,dtensor" if importlib.util.find_spec("torch.distributed.tensor") else "ddp"
    r0, r1 = run_ranks(scenarios, store, ckstore_bin)
    return store, r0, r1


def cli(binary, store):
    def run(*args):
        proc = subprocess.run([binary, "--store", store, *args], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        return proc
    return run


def test_ddp_rank0_pushes_once_per_step(ckstore_bin, rank0_job):
    store, r0, r1 = rank0_job
    r0, r1, ckstore = r0["ddp"], r1["ddp"], cli(ckstore_bin, store)
    assert sorted(map(int, r0["results"])) == [2, 4, 6]
    assert all(d.startswith("sha256:") for d in r0["results"].values())
    assert set(r1["results"].values()) == {None}  # rank 1: completed futures, no put
    listing = json.loads(ckstore("ls", "--run", "ddp", "--json").stdout)
    snaps = listing["snapshots"]
    assert [s["step"] for s in snaps] == [2, 4, 6]  # exactly one snapshot per step, no conflicts
    assert [s["digest"] for s in snaps] == [r0["results"][str(s)] for s in (2, 4, 6)]
    assert all(any(m["name"] == "loss" for m in s["metrics"]) for s in snaps)
    got = ckstore_load(store, ckstore_bin, "ddp@6")
    for name, value in r0["weights"].items():
        np.testing.assert_array_equal(got[name].numpy(), np.asarray(value, dtype=np.float32))
        assert r1["weights"][name] == value  # DDP kept the ranks in step


def ckstore_load(store, binary, ref):
    return ck.load(ref, store=store, binary=binary, framework="torch")


def test_dtensor_and_sharded_tensor_full_state_pushed_by_rank0(ckstore_bin, rank0_job):
    pytest.importorskip("torch.distributed.tensor")
    store, r0, r1 = rank0_job
    r0, r1, ckstore = r0["dtensor"], r1["dtensor"], cli(ckstore_bin, store)
    assert r0["result"].startswith("sha256:") and r1["result"] is None
    got = ckstore_load(store, ckstore_bin, "dt@1")
    full = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    assert torch.equal(got["w"], full)
    assert got["b"].dtype == torch.bfloat16 and torch.equal(got["b"], full[:, 0].bfloat16())
    assert torch.equal(got["plain"], torch.ones(3))
    if importlib.util.find_spec("torch.distributed._shard.sharded_tensor") is not None:
        assert "legacy" in got  # a ShardedTensor, gathered to rank 0
        assert torch.equal(got["legacy"], torch.cat([torch.full((3, 4), 1.0), torch.full((3, 4), 2.0)]))
    assert [s["step"] for s in json.loads(ckstore("ls", "--run", "dt", "--json").stdout)["snapshots"]] == [1]


def test_per_rank_parts(ckstore_bin, store, ckstore, tmp_path):
    pytest.importorskip("torch.distributed.tensor")
    if not ck.put_supports_parts(ckstore_bin):
        pytest.skip("this ckstore's `put` has no --parts yet (issue 11)")
    r0, r1 = (out["parts"] for out in run_ranks("parts", store, ckstore_bin))
    assert r0["result"].startswith("sha256:") and r1["result"].startswith("sha256:")
    for rank, out in ((0, r0), (1, r1)):
        part = tmp_path / f"part{rank}.safetensors"
        ckstore("get", "parts@1", "--file", ck.part_name(rank, 2), "-o", str(part))
        tensors = ck.safetensors_io.read_file(part)
        np.testing.assert_array_equal(tensors["w"], np.asarray(out["local"], dtype=np.float32))


def test_push_dir(ckstore_bin, store, ckstore, tmp_path):
    if not ck.put_supports_dirs(ckstore_bin):
        pytest.skip("this ckstore's `put` takes no directory yet (issue 11)")
    d = tmp_path / "checkpoint-10"
    d.mkdir()
    (d / "config.json").write_text('{"hidden": 8}')
    with ck.CheckpointPusher("dir", store=store, binary=ckstore_bin) as pusher:
        with pytest.raises(NotADirectoryError):
            pusher.push_dir(10, d / "config.json")
        state = {"w": torch.arange(4.0)}
        from ckstore.host import snapshot_to_host
        tensors, meta = snapshot_to_host(state)
        with open(d / "model.safetensors", "wb") as f:
            ck.safetensors_io.write(f, tensors, meta)
        assert pusher.push_dir(10, d).result().startswith("sha256:")
    out = tmp_path / "out"
    ckstore("get", "dir@10", "-o", str(out))
    assert (out / "config.json").read_text() == '{"hidden": 8}'
    assert (out / "model.safetensors").read_bytes() == (d / "model.safetensors").read_bytes()
