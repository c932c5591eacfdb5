"""Directory snapshots (issue 11, "a snapshot is a tree"): put DIR, get -o DIR, --file, ls/show/stats,
rm/gc/fsck/copy of trees, every bad tree input, and crash safety of get.

Each test builds a small Hugging Face style checkpoint directory: two safetensors shards, their
index, config.json, a tokenizer-like JSON file in a subfolder and an opaque binary file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from safetensors_bytes import floats, safetensors


def hf_files(step: int = 0) -> dict[str, bytes]:
    """An HF-style checkpoint; shard 2 changes with the step, everything else does not."""
    shard1 = safetensors({"model.embed.weight": ("F32", [64, 32], floats(64 * 32, 1))}, {"format": "pt"})
    shard2 = safetensors({"model.head.weight": ("F32", [32, 16], floats(32 * 16, 100 + step)),
                          "model.head.bias": ("BF16", [16], bytes(32))}, {"format": "pt"})
    index = json.dumps({"metadata": {"total_size": 64 * 32 * 4 + 32 * 16 * 4 + 32},
                        "weight_map": {"model.embed.weight": "model-00001-of-00002.safetensors",
                                       "model.head.weight": "model-00002-of-00002.safetensors",
                                       "model.head.bias": "model-00002-of-00002.safetensors"}}, indent=2).encode()
    return {
        "model-00001-of-00002.safetensors": shard1,
        "model-00002-of-00002.safetensors": shard2,
        "model.safetensors.index.json": index,
        "config.json": json.dumps({"hidden_size": 32, "architectures": ["Tiny"]}).encode(),
        "tokenizer/tokenizer.json": json.dumps({"model": {"vocab": {f"t{i}": i for i in range(500)}}}).encode(),
        "optimizer.pt": random.Random(7).randbytes(300_000),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            assert not p.is_symlink(), p
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def digest_of(proc) -> str:
    line = proc.stdout.decode().strip()
    assert line.startswith("sha256:") and len(line) == 71, line
    return line


def store_state(store: str) -> tuple:
    """What must not change after a refused put: the blob files and the snapshot listing."""
    objects = Path(store) / "objects"
    blobs = sorted(str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()) if objects.exists() else []
    return tuple(blobs)


def test_an_hf_directory_round_trips_byte_exact(ckstore, tmp_path):
    files = hf_files()
    src = write_tree(tmp_path / "ckpt", files)
    digest = digest_of(ckstore("put", "--run", "r", "--step", "1", str(src)))
    out = tmp_path / "restored"
    ckstore("get", "r@1", "-o", str(out))
    assert read_tree(out) == files
    # The digest names the tree everywhere.
    ls = json.loads(ckstore("ls", "--run", "r", "--json").stdout)
    snap = ls["snapshots"][0]
    assert snap["digest"] == digest and snap["files"] == 6 and snap["kind"] == "tree"
    assert snap["logical_bytes"] == sum(len(b) for b in files.values())
    assert "FILES" in ckstore("ls", "--run", "r").stdout.decode().splitlines()[0]
    show = json.loads(ckstore("show", "r@1", "--json").stdout)
    assert show["digest"] == digest and show["file_count"] == 6
    assert [f["path"] for f in show["files"]] == sorted(files, key=lambda p: p.encode())
    shard = next(f for f in show["files"] if f["path"] == "model-00002-of-00002.safetensors")
    assert shard["kind"] == "safetensors" and [t["name"] for t in shard["tensors"]] == ["model.head.weight", "model.head.bias"]
    assert next(f for f in show["files"] if f["path"] == "config.json")["kind"] == "bytes"
    text = ckstore("show", "r@1").stdout.decode()
    assert text.index("config.json") < text.index("model.head.weight")
    # One file at a time, to stdout or a file; the digest ref works like RUN@STEP.
    for rel, data in files.items():
        assert ckstore("get", "r@1", "--file", rel, "-o", "-").stdout == data
    ckstore("get", digest, "--file", "optimizer.pt", "-o", str(tmp_path / "opt.pt"))
    assert (tmp_path / "opt.pt").read_bytes() == files["optimizer.pt"]


def test_the_hf_cache_layout_of_symlinks_into_blobs_is_followed(ckstore, tmp_path):
    files = hf_files()
    plain = digest_of(ckstore("put", "--run", "plain", "--step", "1", str(write_tree(tmp_path / "plain", files))))
    repo = tmp_path / "hub" / "models--org--tiny"
    snap = repo / "snapshots" / "0123abcd"
    for rel, data in files.items():
        blob = repo / "blobs" / f"{abs(hash(rel)):x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))  # ../../blobs/<hash>, ../../../blobs/<hash>
    assert (snap / "config.json").is_symlink()
    digest = digest_of(ckstore("put", "--run", "hf", "--step", "1", str(snap)))
    assert digest == plain  # the same files, the same tree
    out = tmp_path / "out"
    ckstore("get", "hf@1", "-o", str(out))
    assert read_tree(out) == files  # regular files, not links


def test_unchanged_side_files_cost_nothing_after_the_first_put_and_stats_shows_it(ckstore, tmp_path):
    first = ckstore("put", "--run", "r", "--step", "1", "--json", str(write_tree(tmp_path / "s1", hf_files(1))))
    second = ckstore("put", "--run", "r", "--step", "2", "--json", str(write_tree(tmp_path / "s2", hf_files(2))))
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["files"] == 6 and b["files"] == 6
    assert a["digest"] != b["digest"]
    # Only shard 2 changed: one new chunk (its head tensor), nothing else stored again.
    assert b["new_chunks"] <= 2 and b["bytes_stored"] < 32 * 16 * 4 + 200
    stats = json.loads(ckstore("stats", "--json").stdout)
    side = [k for k in hf_files(1) if not k.endswith(".safetensors")]
    side_bytes = sum(len(hf_files(1)[k]) for k in side)
    assert stats["side_files"] == 2 * len(side)
    assert stats["side_file_bytes"] == 2 * side_bytes
    assert stats["side_file_unique_bytes"] == side_bytes
    assert "side files" in ckstore("stats").stdout.decode()


BAD_INPUTS = ["symlink loop", "dangling link", "link to a directory", "fifo", "socket", "link to a device",
              "empty directory", "empty subdirectory", "non-UTF-8 name", "malformed shard", "link loop through two"]


def make_bad(kind: str, root: Path) -> str:
    """Lays out a good tree plus one bad entry; returns the path the error must name."""
    write_tree(root, {"config.json": b"{}", "model.safetensors": safetensors({"w": ("F32", [2], bytes(8))})})
    if kind == "symlink loop":
        os.symlink("loop", root / "loop")
        return "loop"
    if kind == "link loop through two":
        os.symlink("b", root / "a")
        os.symlink("a", root / "b")
        return "a"
    if kind == "dangling link":
        os.symlink("missing-target", root / "dangling.json")
        return "dangling.json"
    if kind == "link to a directory":
        (root / "real").mkdir()
        (root / "real" / "f").write_bytes(b"x")
        os.symlink("real", root / "alias")
        return "alias"
    if kind == "fifo":
        os.mkfifo(root / "pipe")
        return "pipe"
    if kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(root / "sock"))
        s.close()
        return "sock"
    if kind == "link to a device":
        os.symlink("/dev/null", root / "null")
        return "null"
    if kind == "empty directory":
        for p in root.iterdir():
            p.unlink()
        return str(root)
    if kind == "empty subdirectory":
        (root / "sub" / "deeper").mkdir(parents=True)
        return "sub/deeper"
    if kind == "non-UTF-8 name":
        with open(os.fsencode(root) + b"/bad\xff.json", "wb"):
            pass
        return "bad"
    if kind == "malformed shard":
        (root / "model-00002.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{")
        return "model-00002.safetensors"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_tree_input_is_refused_naming_the_path_and_leaves_the_store_unchanged(ckstore, tmp_path, store, kind):
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "good", {"a.json": b"1"})))
    before_ls = ckstore("ls", "--run", "r", "--json").stdout
    before = store_state(store)
    named = make_bad(kind, tmp_path / "bad")
    proc = ckstore("put", "--run", "r", "--step", "2", str(tmp_path / "bad"), check=False)
    assert proc.returncode == 1, (kind, proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckstore: error: "), proc.stderr
    assert named in lines[0], (kind, lines[0])
    assert ckstore("ls", "--run", "r", "--json").stdout == before_ls
    assert store_state(store) == before
    assert ckstore("fsck").returncode == 0


def test_get_refuses_a_non_empty_directory_without_force_and_replaces_it_with_force(ckstore, tmp_path):
    files = hf_files()
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "src", files)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_bytes(b"mine")
    proc = ckstore("get", "r@1", "-o", str(out), check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr and str(out) in proc.stderr
    assert read_tree(out) == {"keep.txt": b"mine"}
    ckstore("get", "r@1", "-o", str(out), "--force")
    assert read_tree(out) == files
    # An existing empty directory is simply filled; a regular file is refused.
    empty = tmp_path / "empty"
    empty.mkdir()
    ckstore("get", "r@1", "-o", str(empty))
    assert read_tree(empty) == files
    (tmp_path / "afile").write_bytes(b"x")
    proc = ckstore("get", "r@1", "-o", str(tmp_path / "afile"), check=False)
    assert proc.returncode == 1 and "not a directory" in proc.stderr
    assert (tmp_path / "afile").read_bytes() == b"x"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_usage_errors_and_wrong_kinds(ckstore, tmp_path):
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "src", hf_files())))
    single = tmp_path / "one.safetensors"
    single.write_bytes(safetensors({"w": ("F32", [4], floats(4, 3))}))
    ckstore("put", "--run", "r", "--step", "2", str(single))
    proc = ckstore("get", "r@1", "-o", "-", check=False)
    assert proc.returncode == 2 and "--file" in proc.stderr and proc.stdout == b""
    proc = ckstore("get", "r@1", "--file", "nope.json", "-o", "-", check=False)
    assert proc.returncode == 1 and "nope.json" in proc.stderr
    proc = ckstore("get", "r@2", "--file", "config.json", "-o", "-", check=False)
    assert proc.returncode == 1 and "single-file" in proc.stderr
    # Single-file get is unchanged.
    assert ckstore("get", "r@2", "-o", "-").stdout == single.read_bytes()
    assert json.loads(ckstore("ls", "--run", "r", "--json").stdout)["snapshots"][1]["files"] == 1


def test_averaging_directory_snapshots_gives_a_directory_with_the_newest_layout(ckstore, tmp_path):
    # Averaging itself is covered by test_tree_average.py; here: the result has the same paths.
    for step in (1, 2):
        ckstore("put", "--run", "r", "--step", str(step), str(write_tree(tmp_path / f"s{step}", hf_files(step))))
    out = tmp_path / "avg"
    proc = ckstore("get", "--run", "r", "--lawa", "k=2,stride=1", "--at", "2", "-o", str(out), check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(hf_files(2))


def test_a_failed_get_leaves_nothing_behind(ckstore_bin, ckstore, tmp_path, store):
    files = hf_files()
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "src", files)))
    for skip in (2, len(files)):  # a file's rename inside the tree, then the final rename of the tree
        out = tmp_path / f"out{skip}"
        env = {**os.environ, "CKSTORE_FAULT": f"rename:EIO:{skip}:1"}
        proc = subprocess.run([ckstore_bin, "--store", store, "get", "r@1", "-o", str(out)], env=env, capture_output=True)
        assert proc.returncode == 1, proc.stderr
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_killed_get_leaves_nothing_under_the_final_name(ckstore_bin, ckstore, tmp_path, store):
    big = {f"shard-{i}.bin": random.Random(i).randbytes(24 << 20) for i in range(4)}
    big["config.json"] = b"{}"
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "src", big)))
    killed_mid_write = 0
    for attempt in range(6):
        out = tmp_path / f"out{attempt}"
        proc = subprocess.Popen([ckstore_bin, "--store", store, "get", "r@1", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.name.startswith(f".out{attempt}.tmp-")]:
            time.sleep(0.002)
        time.sleep(0.01 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not out.exists():
            killed_mid_write += 1
        else:  # the get finished before the kill: then it must be complete
            assert read_tree(out) == big
    assert killed_mid_write >= 1
    # A get afterwards works, and gc-style leftovers are only hidden temporary siblings.
    ckstore("get", "r@1", "-o", str(tmp_path / "final"))
    assert read_tree(tmp_path / "final") == big


def test_rm_gc_and_fsck_understand_trees(ckstore, tmp_path, store):
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "s1", hf_files(1))))
    ckstore("put", "--run", "r", "--step", "2", str(write_tree(tmp_path / "s2", hf_files(2))))
    assert "ok:" in ckstore("fsck", "--full").stdout.decode()
    blobs_before = len(store_state(store))
    ckstore("rm", "r@1")
    ckstore("gc")
    # Only shard 2's changed tensor of step 1 was unshared.
    assert len(store_state(store)) == blobs_before - 1
    out = tmp_path / "out"
    ckstore("get", "r@2", "-o", str(out))
    assert read_tree(out) == hf_files(2)
    ckstore("put", "--run", "r", "--step", "3", str(write_tree(tmp_path / "s3", hf_files(3))))
    ckstore("gc", "--keep-last", "1")
    assert [s["step"] for s in json.loads(ckstore("ls", "--run", "r", "--json").stdout)["snapshots"]] == [3]
    assert ckstore("fsck", "--full").returncode == 0
    # Damage the blob of a side file: fsck names the step and the file; --full too.
    show = json.loads(ckstore("show", "r@3", "--json").stdout)
    assert show["file_count"] == 6
    objects = Path(store) / "objects"
    sizes = {p: p.stat().st_size for p in objects.rglob("*") if p.is_file()}
    opt = max(sizes, key=sizes.get)  # the 300 kB optimizer.pt blob is the largest
    data = bytearray(opt.read_bytes())
    data[-1] ^= 0xFF
    opt.write_bytes(bytes(data))
    proc = ckstore("fsck", "--full", check=False)
    assert proc.returncode == 3, proc.stdout
    report = proc.stdout.decode() + proc.stderr
    assert "r@3" in report and "optimizer.pt" in report, report
    opt.unlink()
    proc = ckstore("fsck", check=False)
    assert proc.returncode == 3 and "optimizer.pt" in proc.stdout.decode() + proc.stderr
    proc = ckstore("get", "r@3", "-o", str(tmp_path / "broken"), check=False)
    assert proc.returncode == 3 and "optimizer.pt" in proc.stderr
    assert not (tmp_path / "broken").exists()


def test_copy_carries_trees_between_stores(ckstore_bin, ckstore, tmp_path, store):
    ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "s1", hf_files(1))))
    ckstore("put", "--run", "r", "--step", "2", str(write_tree(tmp_path / "s2", hf_files(2))))
    other = str(tmp_path / "other")
    ckstore("copy", "--from", store, "--to", other)
    proc = subprocess.run([ckstore_bin, "--store", other, "get", "r@2", "-o", str(tmp_path / "o")], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert read_tree(tmp_path / "o") == hf_files(2)
    mine = json.loads(ckstore("ls", "--run", "r", "--json").stdout)["snapshots"]
    theirs = json.loads(subprocess.run([ckstore_bin, "--store", other, "ls", "--run", "r", "--json"],
                                       capture_output=True, check=True).stdout)["snapshots"]
    assert [s["digest"] for s in mine] == [s["digest"] for s in theirs]
    assert subprocess.run([ckstore_bin, "--store", other, "fsck", "--full"], capture_output=True).returncode == 0


# --- Stores made by the release before trees (commit efe0109, schema version 2) ------------------

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release-efe0109-store"
RELEASE_SHA256 = {
    100: "3c7cacc0de6290e6feebd66472e1e3967d854e2c6028e9b5495ff7e79e9625b2",
    200: "44a144e8f98b190c7357f547ef904e6fb2509db0cacc8afa9d3159c782bdeb2e",
    300: "c7e02611d5a2e7ae9f3afc7f09064c67c852c782d08dc9c971b5b208b8bfbf86",
}
RELEASE_DIGESTS = {
    100: "sha256:4b1223c75b4ecb8dacdcf2995eee9b73ba622371fa372c053ef76393590ac1ab",
    200: "sha256:5bc20a76f828eded87814b6473f4e824e148b2b08142e73b784a91eaa3636bc5",
    300: "sha256:a6011cb249a74b513626b7327e51adf0d15e72b2dce3aa9db27706870c517125",
}
RELEASE_LAWA_SHA256 = "1cbf4768109522401f5ef686653d3daa8c8731bba2276c7324c30583f8f6c9ca"


def release_step_file(step: int) -> bytes:
    """The safetensors file the fixture holds at `step` (compact JSON header, as it was put)."""
    w = struct.pack("<64f", *[(i % 7) * 0.5 + step / 100 for i in range(64)])
    b = struct.pack("<8f", *[step / 100.0] * 8)
    ids = struct.pack("<4q", 1, 2, 3, step)
    header = {"__metadata__": {"format": "pt"}}
    offset, data = 0, b""
    for name, dtype, shape, raw in [("layer.weight", "F32", [8, 8], w), ("layer.bias", "F32", [8], b), ("ids", "I64", [4], ids)]:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def check_release_store_works(run, tmp_path: Path) -> None:
    """`run(*args)` runs the current ckstore on a store holding the fixture's content."""
    import hashlib
    ls = json.loads(run("ls", "--run", "old", "--json").stdout)
    assert [(s["step"], s["digest"], s["files"]) for s in ls["snapshots"]] == [(s, RELEASE_DIGESTS[s], 1) for s in (100, 200, 300)]
    assert [m["value"] for m in ls["metrics"]] == [0.1, 0.2, 0.3]
    for step in (100, 200, 300):
        data = run("get", f"old@{step}", "-o", "-").stdout
        assert data == release_step_file(step)
        assert hashlib.sha256(data).hexdigest() == RELEASE_SHA256[step]
    for extra in ([], ["--no-cache"]):
        out = tmp_path / f"lawa{len(extra)}.safetensors"
        run("get", "--lawa", "k=3,stride=100", "--run", "old", "--at", "300", "-o", str(out), *extra)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == RELEASE_LAWA_SHA256
    # The migrated store takes trees next to its old snapshots.
    tree = write_tree(tmp_path / "tree", hf_files())
    run("put", "--run", "old", "--step", "400", str(tree))
    run("get", "old@400", "-o", str(tmp_path / "tree-out"))
    assert read_tree(tmp_path / "tree-out") == hf_files()
    assert run("fsck", "--full").returncode == 0


def test_a_store_made_by_the_release_before_trees_still_works_after_migration(ckstore_bin, tmp_path):
    import shutil
    import sqlite3
    store = tmp_path / "release-store"
    shutil.copytree(FIXTURE, store)
    assert sqlite3.connect(store / "ckstore.db").execute("PRAGMA user_version").fetchone() == (2,)

    def run(*args):
        proc = subprocess.run([ckstore_bin, "--store", str(store), *args], capture_output=True)
        assert proc.returncode == 0, (args, proc.stderr)
        return proc

    check_release_store_works(run, tmp_path)
    assert sqlite3.connect(store / "ckstore.db").execute("PRAGMA user_version").fetchone() == (4,)  # 003 trees, 004 pending


def test_a_single_file_put_keeps_the_digest_the_release_gave_it(ckstore, tmp_path):
    for step in (100, 200, 300):
        (tmp_path / f"s{step}.safetensors").write_bytes(release_step_file(step))
        assert digest_of(ckstore("put", "--run", "new", "--step", str(step), str(tmp_path / f"s{step}.safetensors"))) \
            == RELEASE_DIGESTS[step]


PG_URL = os.environ.get("CKSTORE_TEST_PG_URL", "")
BASE_BIN = os.environ.get("CKSTORE_BASE_BIN", "")


@pytest.mark.skipif(not PG_URL or not BASE_BIN,
                    reason="needs CKSTORE_TEST_PG_URL and CKSTORE_BASE_BIN (a ckstore built from commit efe0109)")
def test_a_postgres_store_made_by_the_release_before_trees_still_works_after_migration(ckstore_bin, tmp_path):
    import shutil
    import uuid
    source = tmp_path / "release-store"
    shutil.copytree(FIXTURE, source)
    sep = "&" if "?" in PG_URL else "?"
    location = f"{PG_URL}{sep}schema=trees_{uuid.uuid4().hex[:12]}&blobs=file://{tmp_path / 'blobs'}"
    # The release itself creates the PostgreSQL store (schema 2) and copies the fixture into it.
    for args in (["--store", location, "init"], ["copy", "--from", str(source), "--to", location]):
        proc = subprocess.run([BASE_BIN, *args], capture_output=True)
        assert proc.returncode == 0, proc.stderr

    def run(*args):
        proc = subprocess.run([ckstore_bin, "--store", location, *args], capture_output=True)
        assert proc.returncode == 0, (args, proc.stderr)
        return proc

    check_release_store_works(run, tmp_path)


def test_hostile_but_valid_names_round_trip(ckstore, tmp_path):
    files = {
        "-rf": b"dash",
        "new\nline.json": b"nl",
        "tab\tand space .txt": b"ws",
        "ünïcödé/日本語.bin": b"utf8",
        "back\\slash": b"bs",
        "\u202eevil.txt": b"bidi",
        "/".join(["d"] * 60) + "/deep.json": b"deep",
        ".hidden/.x": b"dot",
    }
    digest = digest_of(ckstore("put", "--run", "r", "--step", "1", str(write_tree(tmp_path / "src", files))))
    out = tmp_path / "out"
    ckstore("get", digest, "-o", str(out))
    assert read_tree(out) == files
    for rel, data in files.items():
        assert ckstore("get", "r@1", "--file", rel, "-o", "-").stdout == data
    text = ckstore("show", "r@1").stdout.decode()
    assert "\\n" in text and "\u202e" not in text  # control and bidi characters are escaped


def test_putting_the_same_directory_again_rewrites_a_missing_side_file_blob(ckstore, tmp_path, store):
    files = hf_files()
    src = write_tree(tmp_path / "src", files)
    ckstore("put", "--run", "r", "--step", "1", str(src))
    objects = Path(store) / "objects"
    opt = max((p for p in objects.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    opt.unlink()
    assert ckstore("fsck", check=False).returncode == 3
    again = json.loads(ckstore("put", "--run", "r", "--step", "1", "--json", str(src)).stdout)
    assert again["outcome"] == "unchanged" and again["new_chunks"] == 1
    assert ckstore("fsck", "--full").returncode == 0
    ckstore("get", "r@1", "-o", str(tmp_path / "out"))
    assert read_tree(tmp_path / "out") == files


def test_a_killed_put_of_a_directory_leaves_no_partial_snapshot(ckstore_bin, ckstore, tmp_path, store):
    files = {f"shard-{i}.bin": random.Random(10 + i).randbytes(8 << 20) for i in range(4)}
    files["config.json"] = b"{}"
    src = write_tree(tmp_path / "src", files)
    ckstore("init")
    outcomes = set()
    for attempt in range(6):
        proc = subprocess.Popen([ckstore_bin, "--store", store, "put", "--run", "r", "--step", str(attempt), str(src)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.05 + 0.08 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        steps = [s["step"] for s in json.loads(ckstore("ls", "--run", "r", "--json", check=False).stdout or b'{"snapshots": []}')
                 .get("snapshots", [])]
        outcomes.add(attempt in steps)
        assert ckstore("fsck").returncode == 0  # orphans are notes, never problems
        if attempt in steps:  # acknowledged or not, a visible snapshot is complete
            ckstore("get", f"r@{attempt}", "-o", str(tmp_path / f"o{attempt}"))
            assert read_tree(tmp_path / f"o{attempt}") == files
    assert False in outcomes, "no kill landed before the commit"
    # A complete put afterwards reuses what the killed ones left; gc removes the rest.
    ckstore("put", "--run", "r", "--step", "100", str(src))
    ckstore("gc")
    assert ckstore("fsck", "--full").returncode == 0
    ckstore("get", "r@100", "-o", str(tmp_path / "final"))
    assert read_tree(tmp_path / "final") == files


def test_a_directory_holding_the_store_itself_is_refused(ckstore_bin, tmp_path):
    work = write_tree(tmp_path / "work", {"config.json": b"{}"})
    store = work / ".ckstore"
    proc = subprocess.run([ckstore_bin, "--store", str(store), "init"], capture_output=True)
    assert proc.returncode == 0
    proc = subprocess.run([ckstore_bin, "--store", str(store), "put", "--run", "r", "--step", "1", str(work)], capture_output=True)
    assert proc.returncode == 1 and b"contains the store" in proc.stderr
    ls = subprocess.run([ckstore_bin, "--store", str(store), "ls", "--json"], capture_output=True, check=True)
    assert json.loads(ls.stdout)["runs"] == []
