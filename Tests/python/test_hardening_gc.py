"""Hardening of gc, rm and fsck (issue 9, items 1, 2, 3, 5, 18 and 20):

* gc refuses to delete every blob file when no chunk row refers to any of them (an emptied or
  replaced database looks exactly like that); ``--all-orphans`` overrides; rm never deletes
  orphans.
* ``gc --keep-lawa`` keeps the newest complete LAWA window as well as the newest step's window,
  and keeps a run whole (with a warning) when it has no complete window.
* ``fsck`` names the snapshots damaged blobs break; ``fsck --repair`` drops damaged cached
  averages, quarantines proven-damaged blobs, removes temporary files, and nothing else.
* gc, rm and fsck never follow a symlink inside ``objects/`` and never delete a foreign name.
* Waiting for the store lock is reported after a second, naming the holder, and bounded by
  ``--wait``.
* ``--json`` for gc, rm and fsck.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from reliability_support import CK, acknowledged_digest, assert_reads_back, object_files, write_safetensors
from cache_policy_support import cache_first_requests


def tensors_for(step: int, n: int = 256) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(step)
    return {"w": rng.standard_normal(n, dtype=np.float32)}


def make_store(ckstore_bin: str, tmp_path: Path, name: str = "store") -> CK:
    ck = CK(ckstore_bin, str(tmp_path / name))
    ck.init()
    return ck


def put(ck: CK, tmp_path: Path, run: str, step: int, n: int = 256) -> tuple[str, Path, str]:
    """Puts a fresh snapshot; returns (digest, file path, file sha256)."""
    path = tmp_path / f"{run}-{step}.safetensors"
    sha = write_safetensors(path, tensors_for(step * 7 + len(run), n))
    digest = acknowledged_digest(ck.run("put", "--run", run, "--step", str(step), str(path)))
    return digest, path, sha


def tree(path: Path) -> dict[str, bytes | str]:
    """Every entry under `path` (links by target, files by content), without following links."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(path))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


def db_rows(store: str, sql: str) -> list[tuple]:
    with sqlite3.connect(Path(store) / "ckstore.db") as db:
        return db.execute(sql).fetchall()


# ---------------------------------------------------------------------------------------------
# Item 1: gc refuses to delete more than it can justify


def test_gc_refuses_to_delete_every_blob_when_the_database_names_none(ckstore_bin, tmp_path):
    """A database without snapshots (here: a fresh store's database copied over a populated
    one) next to a populated objects/: gc and gc --dry-run exit 1, say why, delete nothing;
    gc --all-orphans deletes them."""
    ck = make_store(ckstore_bin, tmp_path)
    for step in (1, 2, 3):
        put(ck, tmp_path, "r", step)
    blobs_before = object_files(ck.store)
    assert len(blobs_before) == 3
    empty = make_store(ckstore_bin, tmp_path, "empty")
    for suffix in ("", "-wal", "-shm"):
        src = Path(empty.store) / f"ckstore.db{suffix}"
        dst = Path(ck.store) / f"ckstore.db{suffix}"
        if dst.exists():
            dst.unlink()
        if src.exists():
            shutil.copy(src, dst)
    for args in (("gc",), ("gc", "--dry-run"), ("gc", "--keep-last", "1")):
        r = ck.run(*args, check=False)
        assert r.returncode == 1, r.describe()
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckstore: error: "), r.describe()
        assert "refusing" in r.stderr and "3 blob file(s)" in r.stderr and "no snapshots" in r.stderr, r.describe()
        assert "--all-orphans" in r.stderr, r.describe()
        assert object_files(ck.store) == blobs_before, f"{args} deleted blobs"
    r = ck.run("gc", "--all-orphans", "--dry-run")
    assert object_files(ck.store) == blobs_before
    r = ck.run("gc", "--all-orphans")
    assert "removed 0 snapshot(s), 0 derived, 3 blob file(s)" in r.text, r.describe()
    assert object_files(ck.store) == set()


def test_gc_refuses_when_the_database_belongs_to_another_store(ckstore_bin, tmp_path):
    """The database of another store (its snapshots' blobs are not here): gc refuses too."""
    ck = make_store(ckstore_bin, tmp_path)
    for step in (1, 2):
        put(ck, tmp_path, "r", step)
    other = make_store(ckstore_bin, tmp_path, "other")
    put(other, tmp_path, "x", 5, n=300)
    blobs_before = object_files(ck.store)
    for suffix in ("", "-wal", "-shm"):
        dst = Path(ck.store) / f"ckstore.db{suffix}"
        if dst.exists():
            dst.unlink()
        src = Path(other.store) / f"ckstore.db{suffix}"
        if src.exists():
            shutil.copy(src, dst)
    r = ck.run("gc", check=False)
    assert r.returncode == 1 and "refusing" in r.stderr and "names a blob file that exists" in r.stderr, r.describe()
    assert object_files(ck.store) == blobs_before


def test_gc_still_collects_when_rows_justify_every_deletion(ckstore_bin, tmp_path):
    """rm of every snapshot, then gc dropping the last cached average: every file gc deletes
    had a chunk row, so gc goes ahead (no false refusal). rm never deletes orphans."""
    ck = make_store(ckstore_bin, tmp_path)
    cache_first_requests(ck.store)  # a test of the cache itself
    for step in (10, 20):
        put(ck, tmp_path, "r", step)
    ck.run("get", "--run", "r", "--lawa", "k=2,stride=10", "--at", "20", "-o", str(tmp_path / "avg.safetensors"))
    # An orphan: a blob of another store's content, planted as a crashed put would leave it.
    other = make_store(ckstore_bin, tmp_path, "other")
    put(other, tmp_path, "x", 1, n=100)
    orphan = next(iter(object_files(other.store)))
    blob_path(ck.store, orphan).parent.mkdir(exist_ok=True)
    shutil.copy(blob_path(other.store, orphan), blob_path(ck.store, orphan))
    r = ck.run("rm", "r@10", "r@20")
    assert orphan in object_files(ck.store), "rm deleted an orphan blob"
    assert "removed 2 snapshot(s)" in r.text
    r = ck.run("gc", "--json")
    out = json.loads(r.stdout)
    assert out["removed_derived"] and out["removed_orphan_blobs"] == 1 and out["removed_referenced_blobs"] >= 1, out
    assert object_files(ck.store) == set()


# ---------------------------------------------------------------------------------------------
# Item 2: --keep-lawa keeps the newest complete window


def test_keep_lawa_keeps_the_newest_complete_window_when_the_newest_step_is_off_grid(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    shas = {}
    for step in [1000, 2000, 3000, 4000, 5000, 6000, 7000, 7350]:
        _, _, shas[step] = put(ck, tmp_path, "a", step)
    # Run b: its newest step is on the grid: only its own window is kept.
    for step in [100, 1100, 2100, 3100]:
        put(ck, tmp_path, "b", step)
    before = tree(Path(ck.store))
    dry = ck.run("gc", "--keep-lawa", "k=3,stride=1000", "--dry-run")
    assert tree(Path(ck.store)) == before, "--dry-run changed the store"
    lines = dry.text.splitlines()
    assert [l for l in lines if l.startswith("would remove a@")] == [f"would remove a@{s}" for s in (1000, 2000, 3000, 4000)], dry.text
    assert "would remove b@100" in lines, dry.text
    assert "keep a@5000, a@6000, a@7000: the newest complete LAWA k=3,stride=1000 window (at 7000)" in lines, dry.text
    assert "keep a@7350: what is stored of the LAWA k=3,stride=1000 window at the newest step 7350" in lines, dry.text
    assert "keep b@1100, b@2100, b@3100: the LAWA k=3,stride=1000 window at the newest step 3100" in lines, dry.text
    out = ck.json("gc", "--keep-lawa", "k=3,stride=1000", "--dry-run")
    windows = {w["run"]: w for w in out["lawa_windows"]}
    assert windows["a"] == {"run": "a", "latest": 7350, "latest_window": [7350], "complete_at": 7000,
                            "complete_window": [5000, 6000, 7000]}, windows
    assert windows["b"]["complete_at"] == 3100 and out["warnings"] == []

    ck.run("gc", "--keep-lawa", "k=3,stride=1000")
    assert sorted(ck.steps("a")) == [5000, 6000, 7000, 7350]
    assert sorted(ck.steps("b")) == [1100, 2100, 3100]
    r = ck.run("get", "--run", "a", "--lawa", "k=3,stride=1000", "--at", "7000", "-o", str(tmp_path / "lawa.safetensors"))
    assert r.returncode == 0
    for step in (5000, 6000, 7000, 7350):
        assert_reads_back(ck, f"a@{step}", shas[step])
    ck.fsck(full=True)


def test_keep_lawa_with_run_filter_touches_only_that_run(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    for step in [1000, 2000, 3000, 4000, 4500]:
        put(ck, tmp_path, "a", step)
        put(ck, tmp_path, "b", step)
    ck.run("gc", "--run", "a", "--keep-lawa", "k=2,stride=1000")
    assert sorted(ck.steps("a")) == [3000, 4000, 4500]  # complete window at 4000; 4500's window: 4500 only
    assert sorted(ck.steps("b")) == [1000, 2000, 3000, 4000, 4500]


def test_keep_lawa_without_any_complete_window_keeps_the_run_and_warns(ckstore_bin, tmp_path):
    """Saves every 1000 with stride=300: no LAWA window is ever complete. gc keeps the whole
    run (it cannot tell what LAWA needs), warns on stderr naming the run, exits 0; other runs
    are collected as usual; --keep-last still applies its own part of the union."""
    ck = make_store(ckstore_bin, tmp_path)
    for step in [0, 1000, 2000, 3000]:
        put(ck, tmp_path, "odd", step)
    for step in [0, 300, 600, 900]:
        put(ck, tmp_path, "ok", step)
    r = ck.run("gc", "--keep-lawa", "k=2,stride=300", "--dry-run")
    assert "ckstore: warning: run 'odd' has no complete LAWA window for k=2,stride=300" in r.stderr, r.describe()
    assert "keeps all of its 4 snapshot(s)" in r.stderr
    assert "would remove odd@" not in r.text and "would remove ok@0" in r.text and "would remove ok@300" in r.text, r.text
    out = ck.json("gc", "--keep-lawa", "k=2,stride=300")
    assert [w for w in out["warnings"] if "'odd'" in w], out
    assert sorted(ck.steps("odd")) == [0, 1000, 2000, 3000]
    assert sorted(ck.steps("ok")) == [600, 900]
    # k larger than the number of snapshots, stride 1: no window can be complete either; the
    # largest K the query parser accepts (10000) is handled without allocating per step, and a
    # larger one is a usage error (item 16), changing nothing.
    r = ck.run("gc", "--keep-lawa", "k=10000,stride=1", "--dry-run")
    assert r.returncode == 0 and "would remove 0 snapshot(s)" in r.text, r.describe()
    r = ck.run("gc", "--keep-lawa", "k=1000000000000,stride=1", check=False)
    assert r.returncode == 2 and "k must be an integer from 1 to 10000" in r.stderr, r.describe()
    assert sorted(ck.steps("odd")) == [0, 1000, 2000, 3000]


# ---------------------------------------------------------------------------------------------
# Item 3: fsck reports damaged snapshots; fsck --repair


def blob_of(store: str, run: str, step: int) -> list[str]:
    return [h for (h,) in db_rows(store, f"""
        SELECT DISTINCT lower(hex(c.hash)) FROM chunks c JOIN tensor_chunks tc ON tc.chunk_id = c.id
        JOIN snapshots s ON s.manifest_id = tc.manifest_id JOIN runs r ON r.id = s.run_id
        WHERE r.name = '{run}' AND s.step = {step}""")]


def derived_blobs(store: str) -> list[str]:
    return [h for (h,) in db_rows(store, """
        SELECT DISTINCT lower(hex(c.hash)) FROM chunks c JOIN tensor_chunks tc ON tc.chunk_id = c.id
        JOIN derived d ON d.manifest_id = tc.manifest_id""")]


def blob_path(store: str, h: str) -> Path:
    return Path(store) / "objects" / h[:2] / h


def test_fsck_names_damaged_snapshots_and_repair_fixes_only_what_it_can_prove(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    cache_first_requests(ck.store)  # a test of the cache itself
    digests, files = {}, {}
    for step in (1000, 2000, 3000):
        digests[step], files[step], _ = put(ck, tmp_path, "r", step)
    ck.run("get", "--run", "r", "--lawa", "k=2,stride=1000", "--at", "3000", "-o", str(tmp_path / "avg.safetensors"))
    (derived,) = derived_blobs(ck.store)
    (missing,) = blob_of(ck.store, "r", 1000)
    (damaged,) = blob_of(ck.store, "r", 2000)
    blob_path(ck.store, derived).unlink()
    blob_path(ck.store, missing).unlink()
    p = blob_path(ck.store, damaged)
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[72] ^= 0xFF  # payload (after the 64-byte header): found by --full (checksum)
    p.write_bytes(bytes(data))
    temp = blob_path(ck.store, damaged).with_name(damaged + ".tmp-123-456-7")
    temp.write_bytes(b"partial")
    foreign = Path(ck.store) / "objects" / damaged[:2] / "notes.txt"
    foreign.write_text("mine")

    r = ck.run("fsck", "--full", check=False)
    assert r.returncode == 3, r.describe()
    assert f"damaged: r@1000 (sha256:{digests[1000][7:]}): 1 blob(s) missing; repair: put the original file again " \
           f"(ckstore put --run r --step 1000 FILE)" in r.text, r.text
    assert f"damaged: r@2000 (sha256:{digests[2000][7:]}): 1 blob(s) damaged" in r.text, r.text
    assert "damaged: cached average 'lawa run=r k=2 stride=1000 at=3000'" in r.text, r.text
    out = json.loads(ck.run("fsck", "--full", "--json", check=False).stdout)
    assert out["ok"] is False and {tuple((s["run"], s["step"]) for s in d["snapshots"]) for d in out["damaged_snapshots"]} == \
        {(("r", 1000),), (("r", 2000),), ()}, out
    assert out["temporary_files"] == 1 and out["foreign_entries"] == [f"objects/{damaged[:2]}/notes.txt (regular file with a foreign name)"]

    snapshot_rows = db_rows(ck.store, "SELECT * FROM snapshots ORDER BY id")
    r = ck.run("fsck", "--full", "--repair", check=False)
    assert r.returncode == 3, r.describe()  # r@1000 and r@2000 still need their files
    assert "repaired: drop-derived lawa run=r k=2 stride=1000 at=3000" in r.text, r.text
    assert f"repaired: quarantine-blob {damaged}: damaged at byte 64: payload checksum mismatch" in r.text, r.text
    assert f"repaired: remove-temporary-file objects/{damaged[:2]}/{temp.name}" in r.text, r.text
    assert db_rows(ck.store, "SELECT * FROM snapshots ORDER BY id") == snapshot_rows, "--repair changed a snapshot row"
    assert db_rows(ck.store, "SELECT count(*) FROM derived") == [(0,)]
    assert not temp.exists() and foreign.read_text() == "mine" and not p.exists()
    quarantined = list((Path(ck.store) / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith(damaged) and quarantined[0].read_bytes() == bytes(data)
    assert f"damaged: r@2000 (sha256:{digests[2000][7:]}): 1 blob(s) missing" in r.text, r.text
    # What is left is exactly what a put of the original files repairs.
    out = json.loads(ck.run("fsck", "--json", check=False).stdout)
    assert sorted(s["snapshots"][0]["step"] for s in out["damaged_snapshots"]) == [1000, 2000], out
    assert out["quarantined_files"] == 1 and out["repairs"] == []
    # A second --repair changes nothing more.
    again = json.loads(ck.run("fsck", "--repair", "--json", check=False).stdout)
    assert again["repairs"] == [], again
    # The cached average is recomputed once its inputs are back (put repairs blobs: another item).


def test_fsck_repair_leaves_a_valid_blob_whose_row_disagrees(ckstore_bin, tmp_path):
    """A chunk row whose stored_size is wrong: fsck reports the blob, but the file decodes and
    hashes to its name, so --repair cannot prove it damaged and leaves it in place."""
    ck = make_store(ckstore_bin, tmp_path)
    _, _, sha = put(ck, tmp_path, "r", 1)
    (h,) = blob_of(ck.store, "r", 1)
    before = blob_path(ck.store, h).read_bytes()
    with sqlite3.connect(Path(ck.store) / "ckstore.db") as db:
        db.execute("UPDATE chunks SET stored_size = stored_size + 1")
    r = ck.run("fsck", "--repair", check=False)
    assert r.returncode == 3 and "quarantine" not in r.text, r.describe()
    assert blob_path(ck.store, h).read_bytes() == before
    assert not (Path(ck.store) / "quarantine").exists()


def test_fsck_repair_with_nothing_wrong_changes_nothing(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    put(ck, tmp_path, "r", 1)
    before = tree(Path(ck.store))
    r = ck.run("fsck", "--repair")
    assert r.text.startswith("ok: ") and "repaired" not in r.text, r.describe()
    after = tree(Path(ck.store))
    assert {k: v for k, v in after.items() if "ckstore.db" not in k} == {k: v for k, v in before.items() if "ckstore.db" not in k}


def test_fsck_without_objects_folder_is_an_integrity_failure(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    digest, _, _ = put(ck, tmp_path, "r", 1)
    (Path(ck.store) / "objects").rename(Path(ck.store) / "objects.moved")
    r = ck.run("fsck", check=False)
    assert r.returncode == 3, r.describe()
    # Opening the store already sees the database and objects/ disagree (docs/FORMAT.md,
    # "Opening a store"): one line naming the problem, and nothing is created.
    assert "objects/ is missing" in r.stderr and r.stderr.startswith("ckstore: error:"), r.describe()
    assert not (Path(ck.store) / "objects").exists() and digest.startswith("sha256:")


# ---------------------------------------------------------------------------------------------
# Item 5: never follow symlinks in objects/, never delete a foreign name


def test_gc_and_fsck_never_follow_symlinks_or_delete_foreign_files(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    for step in (1, 2):
        put(ck, tmp_path, "r", step)
    ck.run("get", "--run", "r", "--lawa", "k=2,stride=1", "--at", "2", "-o", str(tmp_path / "avg.safetensors"))
    objects = Path(ck.store) / "objects"
    used = {h[:2] for h in object_files(ck.store)}
    some = sorted(object_files(ck.store))[0]
    fan = next(f"{i:02x}" for i in range(256) if f"{i:02x}" not in used)
    # A symlinked fan-out folder holding a temp-looking file, a blob-looking name and a
    # ckstore-temp-looking name.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.tmp-final.txt").write_text("report")
    (elsewhere / (fan * 32)).write_text("looks like a blob")
    (elsewhere / (fan * 32 + ".tmp-1-2-3")).write_text("looks like a temp file")
    (objects / fan).symlink_to(elsewhere)
    # A symlinked blob file (name of an orphan blob) pointing outside.
    target = tmp_path / "precious.bin"
    target.write_text("precious")
    fan2 = next(f"{i:02x}" for i in range(256) if f"{i:02x}" not in used | {fan})
    (objects / fan2).mkdir()
    (objects / fan2 / (fan2 * 32)).symlink_to(target)
    (objects / fan2 / ((fan2 * 32) + ".tmp-4-5-6")).symlink_to(target)
    # Foreign regular files in a real fan-out folder and in objects/ itself.
    (objects / some[:2] / "README").write_text("keep me")
    (objects / some[:2] / some.upper()).write_text("upper-case hex is not a blob name")
    (objects / "notes.tmp-1-2-3").write_text("keep me too")
    outside = tree(tmp_path / "elsewhere"), target.read_text()
    foreign_before = {k: v for k, v in tree(objects).items() if not (len(k) == 67 and k[2] == "/" and k[:2] in used)}

    fsck = ck.run("fsck")
    for name in (f"objects/{fan} (symbolic link, not followed)", f"objects/{fan2}/{fan2 * 32} (symbolic link, not followed)",
                 f"objects/{some[:2]}/README (regular file with a foreign name)", "objects/notes.tmp-1-2-3"):
        assert name in fsck.text, fsck.describe()
    for args in (("gc",), ("gc", "--all-orphans"), ("fsck", "--repair"), ("rm", "r@1"), ("gc", "--keep-last", "1")):
        r = ck.run(*args, check=False)
        assert r.returncode == 0, r.describe()
        assert (tree(elsewhere), target.read_text()) == outside, f"{args} touched files outside the store"
        now = {k: v for k, v in tree(objects).items() if not (len(k) == 67 and k[2] == "/" and k[:2] in used)}
        assert now == foreign_before, f"{args} changed foreign entries: {set(now) ^ set(foreign_before)}"
    assert "left alone (not ckstore's): objects/" in ck.run("gc").stderr
    assert sorted(ck.steps("r")) == [2]
    ck.run("fsck", "--full")


def test_fsck_reports_a_referenced_blob_that_is_a_symlink(ckstore_bin, tmp_path):
    """A blob a snapshot uses, replaced by a symlink to a copy of itself: fsck does not read
    through it (a problem naming the snapshot); gc and fsck --repair leave link and target."""
    ck = make_store(ckstore_bin, tmp_path)
    put(ck, tmp_path, "r", 1)
    (h,) = blob_of(ck.store, "r", 1)
    copy = tmp_path / "copy"
    shutil.copy(blob_path(ck.store, h), copy)
    blob_path(ck.store, h).unlink()
    blob_path(ck.store, h).symlink_to(copy)
    r = ck.run("fsck", check=False)
    assert r.returncode == 3 and "symbolic link, not followed" in r.text and "damaged: r@1" in r.text, r.describe()
    for args in (("gc",), ("fsck", "--repair")):
        ck.run(*args, check=False)
        assert blob_path(ck.store, h).is_symlink() and copy.exists()


# ---------------------------------------------------------------------------------------------
# Item 18: waiting for the store lock


def start_paused_put(ck: CK, tmp_path: Path):
    """A put streaming from stdin, paused halfway while it holds the store lock."""
    path = tmp_path / "paused.safetensors"
    write_safetensors(path, tensors_for(99, 64 * 1024))
    data = path.read_bytes()
    proc = ck.start_with_stdin("put", "--run", "p", "--step", "1", "-")
    proc.popen.stdin.write(data[: len(data) // 2])
    proc.popen.stdin.flush()
    deadline = time.monotonic() + 10
    while not lock_is_held(ck.store):
        assert proc.running() and time.monotonic() < deadline, "the put did not take the lock"
        time.sleep(0.01)
    return proc, data


def lock_is_held(store: str) -> bool:
    with open(Path(store) / "lock", "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def test_gc_and_rm_report_the_put_they_wait_for_and_give_up_after_wait(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    put(ck, tmp_path, "r", 1)
    put(ck, tmp_path, "r", 2)
    put_proc, data = start_paused_put(ck, tmp_path)
    try:
        before = db_rows(ck.store, "SELECT * FROM snapshots ORDER BY id")
        files = object_files(ck.store)
        for args, limit in ((("gc", "--keep-last", "1", "--wait", "1.5"), 1.5), (("rm", "r@1", "--wait", "0"), 0.0),
                            (("fsck", "--repair", "--wait", "1.2"), 1.2)):
            t = time.monotonic()
            r = ck.run(*args, check=False)
            took = time.monotonic() - t
            assert r.returncode == 1, r.describe()
            assert limit <= took < limit + 3, f"{args}: gave up after {took:.2f} s"
            assert f"held by put (pid {put_proc.popen.pid})" in r.stderr, r.describe()
            errors = [l for l in r.stderr.splitlines() if l.startswith("ckstore: error: ")]
            assert len(errors) == 1 and "gave up after" in errors[0] and "nothing was changed" in errors[0], r.describe()
            if limit >= 1:
                assert f"ckstore: waiting for the store lock held by put (pid {put_proc.popen.pid})…" in r.stderr, r.describe()
            assert db_rows(ck.store, "SELECT * FROM snapshots ORDER BY id") == before
        assert object_files(ck.store) >= files
        # Without --wait, gc says it waits (after about a second) and then does its work.
        gc = ck.start("gc", "--keep-last", "1")
        time.sleep(1.6)
        assert gc.running(), "gc did not wait for the put"
        put_proc.popen.stdin.write(data[len(data) // 2:])
        put_proc.popen.stdin.close()
        assert put_proc.wait().returncode == 0
        result = gc.wait()
        assert result.returncode == 0, result.describe()
        assert result.stderr.count("waiting for the store lock held by put") == 1, result.describe()
        assert sorted(ck.steps("r")) == [2]
    finally:
        put_proc.kill()


def test_put_and_get_waiting_behind_an_exclusive_holder_say_so(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    _, path, _ = put(ck, tmp_path, "r", 1)
    with open(Path(ck.store) / "lock", "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        p = ck.start("put", "--run", "r", "--step", "2", str(path))
        g = ck.start("get", "r@1", "-o", str(tmp_path / "out.safetensors"))
        time.sleep(1.5)
        assert p.running() and g.running()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    for proc in (p, g):
        r = proc.wait()
        assert r.returncode == 0, r.describe()
        assert f"(pid {os.getpid()})…" in r.stderr and "ckstore: waiting for the store lock held by " in r.stderr, r.describe()


@pytest.mark.parametrize("value", ["-1", "x", "nan", "1e9"])
def test_wait_rejects_bad_values(ckstore_bin, tmp_path, value):
    ck = make_store(ckstore_bin, tmp_path)
    for command in ("gc", "fsck"):
        r = ck.run(command, "--wait", value, check=False)
        assert r.returncode == 2 and "--wait" in r.stderr, r.describe()


# ---------------------------------------------------------------------------------------------
# Item 20: --json for gc, rm and fsck


def test_gc_rm_fsck_json(ckstore_bin, tmp_path):
    ck = make_store(ckstore_bin, tmp_path)
    for step in (1, 2, 3):
        put(ck, tmp_path, "r", step)
    out = ck.json("rm", "r@1", "--dry-run")
    assert out["dry_run"] is True and out["removed_snapshots"] == [{"run": "r", "step": 1}] and out["removed_files"] == 1, out
    assert set(out) == {"dry_run", "removed_snapshots", "removed_derived", "removed_pending", "removed_files", "removed_referenced_blobs",
                        "removed_orphan_blobs", "removed_temporary_files", "freed_bytes", "dropped_metrics", "lawa_windows", "warnings",
                        "foreign_entries"}
    out = ck.json("gc", "--keep-last", "1")
    assert out["dry_run"] is False and [s["step"] for s in out["removed_snapshots"]] == [1, 2] and out["freed_bytes"] > 0, out
    fsck = ck.json("fsck")
    assert fsck["ok"] is True and fsck["manifests_checked"] == 1 and fsck["problems"] == [] and fsck["repairs"] == [], fsck
    assert set(fsck) == {"ok", "full", "repair", "manifests_checked", "chunks_checked", "blobs_decoded", "problems",
                         "damaged_snapshots", "repairs", "orphan_blobs", "orphan_bytes", "temporary_files",
                         "quarantined_files", "foreign_entries", "notes"}
