"""Averaging directory snapshots (issue 11, "Averaging across trees") through the command line.

Run "ranks" holds 4-rank checkpoints: at each step, four files rank-0000R-of-00004.safetensors,
each with rank R's rows of every float tensor (and the step counter), plus config.json (changing
per step) and an opaque trainer-state file. Run "one" holds the same tensors as one file per step.
LAWA over the ranks must equal LAWA over the single file bit for bit once the rank slices are put
back together.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cache_policy_support import cache_first_requests

TENSORS = [("embed.weight", "F32", 16, 37), ("layer.0.w", "BF16", 8, 129), ("layer.0.b", "F16", 4, 3),
           ("head.weight", "F32", 12, 300)]
NP = {"F32": np.float32, "F16": np.float16}


def encode(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        return (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    return values.astype(NP[dtype]).astype(np.dtype(NP[dtype]).newbyteorder("<")).tobytes()


def safetensors(tensors: list[tuple[str, str, list[int], bytes]], metadata: dict | None = None) -> bytes:
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset, data = 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def parse(path: Path) -> tuple[dict, dict[str, tuple[str, list[int], bytes]]]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    return meta, {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
                  for k, v in header.items()}


def values(t: int, step: int) -> np.ndarray:
    _, _, rows, cols = TENSORS[t]
    i = np.arange(rows * cols, dtype=np.float64)
    return (np.sin(i * 0.731 + step * 0.113 + t) * (1.5 + step % 7)).reshape(rows, cols)


def model_file(step: int, rank: int, ranks: int) -> bytes:
    specs = []
    for t, (name, dtype, rows, cols) in enumerate(TENSORS):
        per = rows // ranks
        specs.append((name, dtype, [per, cols], encode(values(t, step)[rank * per:(rank + 1) * per], dtype)))
    specs.append(("step", "I64", [1], struct.pack("<q", step)))
    return safetensors(specs, {"format": "pt", "rank": str(rank)})


def rank_path(r: int, n: int = 4) -> str:
    return f"rank-{r:05d}-of-{n:05d}.safetensors"


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rank_tree(step: int) -> dict[str, bytes]:
    files = {rank_path(r): model_file(step, r, 4) for r in range(4)}
    files["config.json"] = json.dumps({"step": step}).encode()
    files["trainer/state.pt"] = bytes((i * 7 + step) % 256 for i in range(5000))
    return files


@pytest.fixture
def runs(ckstore, tmp_path):
    """Runs 'ranks' (4-rank trees) and 'one' (single files) at steps 0, 10, 20, 30."""
    for step in range(0, 40, 10):
        ckstore("put", "--run", "ranks", "--step", str(step), str(write_tree(tmp_path / f"src{step}", rank_tree(step))))
        single = tmp_path / f"one{step}.safetensors"
        single.write_bytes(model_file(step, 0, 1))
        ckstore("put", "--run", "one", "--step", str(step), str(single))
    return tmp_path


LAWA = ["--lawa", "k=3,stride=10", "--at", "30"]


@pytest.mark.parametrize("query", [LAWA, ["--ema", "decay=0.8", "--at", "30"], ["--swa", "start=10", "--at", "30"]])
def test_rank_shards_average_bit_for_bit_like_one_file(ckstore, runs, query):
    out, single = runs / "avg", runs / "avg.safetensors"
    proc = ckstore("get", "--run", "ranks", *query, "-o", str(out))
    assert "6 files" in proc.stderr and "side files copied from ranks@30: config.json, trainer/state.pt" in proc.stderr
    ckstore("get", "--run", "one", *query, "-o", str(single))
    _, whole = parse(single)
    tree = read_tree(out)
    assert sorted(tree) == sorted(rank_tree(30))
    parts = [parse(out / rank_path(r)) for r in range(4)]
    for name, *_ in TENSORS:
        assert b"".join(p[1][name][2] for p in parts) == whole[name][2], name
    recipe = parts[0][0]["ckstore.recipe"]
    inputs = [i["digest"] for i in json.loads(ckstore("show", "--run", "ranks", *query, "--json").stdout)["inputs"]]
    for r, (meta, tensors) in enumerate(parts):
        assert meta["ckstore.recipe"] == recipe and meta["ckstore.inputs"] == ",".join(inputs)
        assert meta["rank"] == str(r) and tensors["step"][2] == struct.pack("<q", 30)
    assert tree["config.json"] == rank_tree(30)["config.json"]
    assert tree["trainer/state.pt"] == rank_tree(30)["trainer/state.pt"]


@pytest.mark.parametrize("case", ["missing file", "missing tensor", "dtype", "shape"])
def test_mismatched_trees_are_refused_naming_path_tensor_and_steps(ckstore, tmp_path, case):
    good = {rank_path(r, 2): model_file(20, r, 2) for r in range(2)}
    bad = dict(good)
    if case == "missing file":
        del bad[rank_path(1, 2)]
        fragments = [rank_path(1, 2)]
    elif case == "missing tensor":
        bad[rank_path(1, 2)] = safetensors([("embed.weight", "F32", [8, 37], bytes(8 * 37 * 4))])
        fragments = [rank_path(1, 2), "layer.0.w"]
    elif case == "dtype":
        bad[rank_path(1, 2)] = safetensors([(n, "BF16" if n == "layer.0.b" else d, s, r)
                                            for n, (d, s, r) in parse_bytes(good[rank_path(1, 2)]).items()])
        fragments = [rank_path(1, 2), "layer.0.b", "BF16"]
    else:
        bad[rank_path(1, 2)] = model_file(20, 0, 4)
        fragments = [rank_path(1, 2), "embed.weight", "[4, 37]"]
    ckstore("put", "--run", "r", "--step", "10", str(write_tree(tmp_path / "a", good)))
    ckstore("put", "--run", "r", "--step", "20", str(write_tree(tmp_path / "b", bad)))
    out = tmp_path / "out"
    proc = ckstore("get", "--run", "r", "--lawa", "k=2,stride=10", "--at", "20", "-o", str(out), check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("ckstore: error: ") and proc.stderr.count("\n") == 1
    for fragment in fragments + ["r@10", "r@20"]:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def parse_bytes(raw: bytes) -> dict[str, tuple[str, list[int], bytes]]:
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}


def test_mixed_single_file_and_tree_inputs_are_refused(ckstore, runs):
    proc = ckstore("get", "--mean", "ranks@10,one@10", "-o", str(runs / "m"), check=False)
    assert proc.returncode == 1
    assert "ranks@10 is a directory snapshot" in proc.stderr and "one@10 is one safetensors file" in proc.stderr


def test_stdout_needs_file_and_file_selects_one(ckstore, runs):
    proc = ckstore("get", "--run", "ranks", *LAWA, "-o", "-", check=False)
    assert proc.returncode == 2 and proc.stdout == b"" and "--file PATH" in proc.stderr
    alone = ckstore("get", "--run", "ranks", *LAWA, "--file", rank_path(2), "-o", "-").stdout
    ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "all"))
    assert alone == (runs / "all" / rank_path(2)).read_bytes()
    served = ckstore("get", "--run", "ranks", *LAWA, "--file", rank_path(2), "-o", "-")
    assert served.stdout == alone and "from the cache" in served.stderr
    assert ckstore("get", "--run", "ranks", *LAWA, "--file", "config.json", "-o", "-").stdout == b'{"step": 30}'
    proc = ckstore("get", "--run", "ranks", *LAWA, "--file", "../etc/passwd", "-o", "-", check=False)
    assert proc.returncode == 1 and "../etc/passwd" in proc.stderr
    proc = ckstore("get", "--run", "one", *LAWA, "--file", rank_path(2), "-o", "-", check=False)
    assert proc.returncode == 2 and proc.stdout == b""


def test_show_and_ls_list_the_copied_side_files(ckstore, runs):
    text = ckstore("show", "--run", "ranks", *LAWA).stdout.decode()
    assert "config.json" in text and "trainer/state.pt" in text and "copied from ranks@30" in text
    assert "averaged, 5 tensors" in text and "cached   no" in text
    doc = json.loads(ckstore("show", "--run", "ranks", *LAWA, "--json").stdout)
    assert doc["copied_files"] == ["config.json", "trainer/state.pt"]
    assert doc["copied_tensors"] == [f"{rank_path(r)}: step" for r in range(4)]
    assert [f["action"] for f in doc["files"]] == ["copy"] + ["average"] * 4 + ["copy"]
    assert json.loads(ckstore("ls", "--run", "ranks", *LAWA, "--json").stdout)["copied_files"] == doc["copied_files"]


def objects(store: str) -> set[Path]:
    return {p for p in Path(store, "objects").rglob("*") if p.is_file()}


def test_cache_hit_on_repeat_and_recompute_after_damage(ckstore, runs, store):
    cache_first_requests(store)  # a test of the cache itself
    before = objects(store)
    first = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "a"))
    assert "computed from 3 inputs" in first.stderr and "derived sha256:" in first.stderr
    derived_only = sorted(objects(store) - before)
    assert derived_only, "the averaged files' chunks are new blobs; the side files are the input's own"
    listed = ckstore("ls", "--derived", "--run", "ranks", "--json").stdout
    assert json.loads(listed)["derived"][0]["recipe"] == "lawa run=ranks k=3 stride=10 at=30"
    second = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "b"))
    assert "from the cache" in second.stderr and read_tree(runs / "b") == read_tree(runs / "a")
    victim = derived_only[-1]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x55
    victim.write_bytes(bytes(data))
    third = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "c"))
    assert "warning: dropped the cached result" in third.stderr and "computed from 3 inputs" in third.stderr
    assert read_tree(runs / "c") == read_tree(runs / "a")
    assert "from the cache" in ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "d")).stderr
    victim.unlink()  # a missing blob: the same, never an error
    fourth = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "f"))
    assert "warning: dropped the cached result" in fourth.stderr and read_tree(runs / "f") == read_tree(runs / "a")
    assert victim.exists(), "the recomputation wrote the missing blob again"
    assert ckstore("fsck", "--full", check=False).returncode == 0
    nocache = ckstore("get", "--run", "ranks", "--lawa", "k=2,stride=10", "--at", "30", "--no-cache", "-o", str(runs / "e"))
    assert "derived" not in nocache.stderr
    assert len(json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"]) == 1


def test_hostile_destinations(ckstore, runs):
    (runs / "file").write_bytes(b"x")
    proc = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "file"), check=False)
    assert proc.returncode == 1 and (runs / "file").read_bytes() == b"x"
    (runs / "target").mkdir()
    os.symlink(runs / "target", runs / "link")
    proc = ckstore("get", "--run", "ranks", *LAWA, "-o", str(runs / "link"), "--force", check=False)
    assert proc.returncode == 1 and os.path.islink(runs / "link") and not os.listdir(runs / "target")
    full = runs / "full"
    full.mkdir()
    (runs / "precious").write_bytes(b"keep")
    os.symlink(runs / "precious", full / "link")
    proc = ckstore("get", "--run", "ranks", *LAWA, "-o", str(full), check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    ckstore("get", "--run", "ranks", *LAWA, "-o", str(full), "--force")
    assert sorted(read_tree(full)) == sorted(rank_tree(30)) and (runs / "precious").read_bytes() == b"keep"
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name or ".old" in p.name]


def test_relative_destinations(ckstore_bin, ckstore, runs, store):
    def get(out: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([ckstore_bin, "--store", store, "get", "--run", "ranks", *LAWA, "-o", out, *extra],
                              cwd=runs, capture_output=True, text=True)
    proc = get("rel")
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_tree(runs / "rel")) == sorted(rank_tree(30))
    (runs / "sub").mkdir()
    assert get("sub/rel2/").returncode == 0 and (runs / "sub" / "rel2" / "config.json").exists()
    assert get("sub/rel2", "--force").returncode == 0
    for bad in (".", "..", "sub/..", "/"):
        proc = get(bad, "--force")
        assert proc.returncode == 1 and "name a new or an empty directory" in proc.stderr, (bad, proc.stderr)
    assert not [p for p in runs.rglob("*") if ".tmp-" in p.name or ".old" in p.name]
    assert not [p for p in Path("/").iterdir() if ".tmp-" in p.name]


def test_hostile_paths_inside_trees(ckstore, tmp_path):
    names = ["-n/--force.safetensors", "a b/ç ☃.safetensors", "deep/er/x.safetensors", "$(touch pwned)/x.json"]
    for step in (1, 2):
        files = {n: model_file(step, 0, 2) if n.endswith(".safetensors") else b"{}" for n in names}
        ckstore("put", "--run", "h", "--step", str(step), str(write_tree(tmp_path / f"s{step}", files)))
    out = tmp_path / "out"
    ckstore("get", "--run", "h", "--lawa", "k=2,stride=1", "--at", "2", "-o", str(out))
    assert sorted(read_tree(out)) == sorted(names) and not (tmp_path / "pwned").exists()


def test_watch_gets_the_result_directory(ckstore_bin, ckstore, runs, store):
    log = runs / "log"
    cmd = f'test -d {{path}} && cat {{path}}/config.json >> "{log}" && echo >> "{log}" && ls {{path}} | wc -l >> "{log}"'
    proc = subprocess.run([ckstore_bin, "--store", store, "watch", "--run", "ranks", "--lawa", "k=2,stride=10",
                           "--exec", cmd, "--until", "30", "--poll", "0.05"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().split()
    assert lines == ['{"step":', '10}', '6', '{"step":', '20}', '6', '{"step":', '30}', '6'], lines
    # Each window is asked for once: under second-hit, the default, none is cached.
    assert json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"] == []
