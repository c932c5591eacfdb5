"""LAWA over per-rank parts (issue 11, "Done when"): each step's four rank files and two side
files are pushed as six `put --parts 6` calls from concurrent processes in random order; the
snapshots they complete are the same trees `put DIR` makes, and LAWA over them equals, bit for
bit, LAWA over the same tensors put as one file per step."""

from __future__ import annotations

import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from test_tree_average import TENSORS, model_file, parse, rank_tree, read_tree, write_tree

STEPS = range(0, 60, 10)


def push_parts(ckstore_bin, store, tmp_path, run: str, step: int, seed: int) -> list[subprocess.CompletedProcess]:
    files = rank_tree(step)
    src = write_tree(tmp_path / f"{run}-src{step}", files)
    order = sorted(files)
    random.Random(seed).shuffle(order)

    def put(rel: str) -> subprocess.CompletedProcess:
        return subprocess.run([ckstore_bin, "--store", store, "put", "--run", run, "--step", str(step), "--parts",
                               str(len(files)), "--path", rel, str(src / rel)], capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        return list(pool.map(put, order))


@pytest.fixture
def three_runs(ckstore, ckstore_bin, store, tmp_path):
    for step in STEPS:
        procs = push_parts(ckstore_bin, store, tmp_path, "parts", step, seed=step)
        assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
        completing = [p for p in procs if len(p.stdout.split()) == 2]
        assert len(completing) == 1, [p.stdout for p in procs]  # completed exactly once
        ckstore("put", "--run", "dirs", "--step", str(step), str(write_tree(tmp_path / f"dir{step}", rank_tree(step))))
        single = tmp_path / f"one{step}.safetensors"
        single.write_bytes(model_file(step, 0, 1))
        ckstore("put", "--run", "one", "--step", str(step), str(single))
    return tmp_path


def digests(ckstore, run: str) -> dict[int, str]:
    return {s["step"]: s["digest"] for s in json.loads(ckstore("ls", "--run", run, "--json").stdout)["snapshots"]}


def test_parts_complete_the_same_trees_as_put_dir(ckstore, three_runs):
    assert digests(ckstore, "parts") == digests(ckstore, "dirs")
    assert json.loads(ckstore("ls", "--pending", "--json").stdout)["pending"] == []


def test_lawa_over_rank_parts_equals_lawa_over_one_file_bit_for_bit(ckstore, three_runs):
    lawa = ["--lawa", "k=6,stride=10", "--at", "50"]
    out, single = three_runs / "avg", three_runs / "avg.safetensors"
    ckstore("get", "--run", "parts", *lawa, "-o", str(out))
    ckstore("get", "--run", "one", *lawa, "-o", str(single))
    _, whole = parse(single)
    ranks = [parse(out / f"rank-{r:05d}-of-00004.safetensors")[1] for r in range(4)]
    for name, *_ in TENSORS:
        assert b"".join(r[name][2] for r in ranks) == whole[name][2], name
    assert read_tree(out)["config.json"] == rank_tree(50)["config.json"]  # side file from the newest step
