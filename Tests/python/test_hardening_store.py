"""Opening and creating stores (issue 9, items 1, 14 and 23).

* A store whose ``objects/`` holds blobs but whose ``ckstore.db`` is missing, empty, has no
  schema or is not a database is an integrity failure (exit 3, one line naming the store and
  the problem) for every command; ``init`` and ``put`` never create a database there, and
  nothing in the store changes (so ``gc`` cannot delete the blobs).
* Siblings: ``config.json`` missing, ``objects/`` missing / a file / a symbolic link while the
  database references chunks (exit 3), a schema newer than the binary (exit 1), a damaged
  schema version (exit 3).
* Readers without write access (run as user ``nobody``) see commits still in the WAL, or fail
  clearly when they cannot read it; writes without access name the permission problem and the
  path; ``init`` on an existing read-only store says it exists (exit 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# ---------------------------------------------------------------------------------------------
# Helpers


def write_safetensors(path: Path, seed: int, floats: int = 3000) -> bytes:
    """A one-tensor F32 safetensors file of `floats` values (about 3 chunks of 4096 bytes)."""
    data = hashlib.sha256(str(seed).encode()).digest() * (floats * 4 // 32 + 1)
    data = data[: floats * 4]
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    content = struct.pack("<Q", len(header)) + header + data
    path.write_bytes(content)
    return content


def run(binary: str, store: Path | str, *args: str, user: list[str] | None = None, timeout: float = 60):
    proc = subprocess.run([*(user or []), binary, "--store", str(store), *args], capture_output=True, timeout=timeout)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def ok(proc, what: str):
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}: {proc.stderr}"
    return proc


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): kind, and size + SHA-256 for files."""
    out: dict[str, tuple] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def blob_count(store: Path) -> int:
    return sum(1 for p in (store / "objects").glob("*/*") if len(p.name) == 64)


def one_error_line(proc, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("ckstore: error:")]
    assert len(errors) == 1, f"expected one error line, got: {proc.stderr!r}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


@pytest.fixture(scope="module")
def populated(ckstore_bin, tmp_path_factory) -> Path:
    """A store with run r at steps 1..3 (small chunks: several blobs each); copy before use."""
    root = tmp_path_factory.mktemp("populated")
    store = root / "store"
    ok(run(ckstore_bin, store, "init"), "init")
    config = json.loads((store / "config.json").read_text())
    config["chunk_size"] = 4096
    (store / "config.json").write_text(json.dumps(config))
    for step in (1, 2, 3):
        write_safetensors(root / f"s{step}.safetensors", seed=step)
        ok(run(ckstore_bin, store, "put", "--run", "r", "--step", str(step), str(root / f"s{step}.safetensors")), "put")
    ok(run(ckstore_bin, store, "metric", "r@1", "loss=1.5"), "metric")
    assert blob_count(store) >= 6
    return store


@pytest.fixture
def copy_of(populated, tmp_path):
    def make() -> Path:
        target = tmp_path / "store"
        shutil.copytree(populated, target, symlinks=True)
        return target

    return make


def every_command(store: Path, work: Path) -> list[tuple[str, list[str]]]:
    """One invocation of every command that opens the store."""
    write_safetensors(work / "new.safetensors", seed=99)
    return [
        ("ls", ["ls"]),
        ("get", ["get", "r@1", "-o", str(work / "out.safetensors")]),
        ("show", ["show", "r@1"]),
        ("stats", ["stats"]),
        ("put", ["put", "--run", "r", "--step", "9", str(work / "new.safetensors")]),
        ("rm", ["rm", "r@1"]),
        ("gc", ["gc"]),
        ("fsck", ["fsck"]),
        ("metric", ["metric", "r@1", "acc=0.5"]),
        ("watch", ["watch", "--run", "r", "--lawa", "k=2,stride=1", "--exec", "true", "--poll", "0.2", "--idle-exit", "1"]),
        ("plot", ["plot", "--run", "r", "--metric", "loss", "-o", str(work / "plot.svg")]),
        ("init", ["init"]),
    ]


COMMANDS = ["ls", "get", "show", "stats", "put", "rm", "gc", "fsck", "metric", "watch", "plot", "init"]


def damage_database(store: Path, how: str) -> str:
    """Damages the store's database; returns the words the error must contain."""
    db = store / "ckstore.db"
    if how == "missing":
        db.unlink()
        return "is missing"
    if how == "empty":
        db.write_bytes(b"")
        return "is empty (0 bytes)"
    if how == "no-schema":
        db.unlink()
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE t (a)")
        conn.execute("DROP TABLE t")
        conn.commit()
        conn.close()
        assert db.stat().st_size > 0
        return "has no schema"
    if how == "not-sqlite":
        db.write_bytes(b"this is not an SQLite database, just some bytes\n" * 100)
        return "not a database"
    raise ValueError(how)


# ---------------------------------------------------------------------------------------------
# Item 1: blobs without a database


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", ["missing", "empty", "no-schema", "not-sqlite"])
def test_blobs_without_a_usable_database_are_an_integrity_failure_for_every_command(ckstore_bin, copy_of, tmp_path, how, command):
    store = copy_of()
    blobs = blob_count(store)
    expected = damage_database(store, how)
    before = tree(store)
    work = tmp_path / "work"
    work.mkdir()
    args = dict(every_command(store, work))[command]
    proc = run(ckstore_bin, store, *args, timeout=30)
    assert proc.returncode == 3, f"{command} with the database {how}: exit {proc.returncode}: {proc.stderr}"
    line = one_error_line(proc, str(store), expected)
    if how != "not-sqlite":
        assert f"objects/ holds {blobs} blobs" in line
    assert tree(store) == before, f"{command} changed the store whose database is {how}"
    assert blob_count(store) == blobs
    assert not (work / "out.safetensors").exists() and not (work / "plot.svg").exists()


def test_emptied_database_then_gc_keeps_every_blob(ckstore_bin, copy_of):
    """The report's reproduction: ``: > ckstore.db; fsck; gc`` deleted every blob."""
    store = copy_of()
    blobs = blob_count(store)
    (store / "ckstore.db").write_bytes(b"")
    assert run(ckstore_bin, store, "fsck").returncode == 3
    assert run(ckstore_bin, store, "gc").returncode == 3
    assert run(ckstore_bin, store, "gc", "--keep-last", "1").returncode == 3
    assert blob_count(store) == blobs
    assert (store / "ckstore.db").stat().st_size == 0


def test_deleted_database_then_put_or_init_creates_nothing(ckstore_bin, copy_of, tmp_path):
    store = copy_of()
    (store / "ckstore.db").unlink()
    before = tree(store)
    write_safetensors(tmp_path / "x.safetensors", seed=5)
    for args in (["init"], ["put", "--run", "r", "--step", "5", str(tmp_path / "x.safetensors")]):
        proc = run(ckstore_bin, store, *args)
        assert proc.returncode == 3, f"{args}: {proc.stderr}"
        one_error_line(proc, str(store), "ckstore.db is missing")
        assert not (store / "ckstore.db").exists()
        assert tree(store) == before


def test_wal_without_its_database_is_an_integrity_failure(ckstore_bin, tmp_path):
    store = tmp_path / "store"
    ok(run(ckstore_bin, store, "init"), "init")
    (store / "ckstore.db").unlink()
    (store / "ckstore.db-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(60))
    before = tree(store)
    for args in (["ls"], ["init"]):
        proc = run(ckstore_bin, store, *args)
        assert proc.returncode == 3, proc.stderr
        one_error_line(proc, str(store), "ckstore.db-wal")
    assert tree(store) == before


def test_empty_database_of_an_empty_store_still_opens(ckstore_bin, tmp_path):
    """No false alarm: an emptied database next to an empty objects/ (a store never written,
    or an init interrupted) is completed by the next command."""
    store = tmp_path / "store"
    ok(run(ckstore_bin, store, "init"), "init")
    (store / "ckstore.db").write_bytes(b"")
    ok(run(ckstore_bin, store, "ls"), "ls")
    write_safetensors(tmp_path / "x.safetensors", seed=5)
    ok(run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(tmp_path / "x.safetensors")), "put")
    ok(run(ckstore_bin, store, "fsck"), "fsck")


# ---------------------------------------------------------------------------------------------
# Siblings: config.json, objects/, schema version


@pytest.mark.parametrize("command", ["ls", "get", "put", "gc", "fsck", "init"])
def test_missing_config_next_to_a_database_is_an_integrity_failure(ckstore_bin, copy_of, tmp_path, command):
    store = copy_of()
    (store / "config.json").unlink()
    before = tree(store)
    work = tmp_path / "work"
    work.mkdir()
    proc = run(ckstore_bin, store, *dict(every_command(store, work))[command])
    assert proc.returncode == 3, f"{command}: {proc.stderr}"
    one_error_line(proc, str(store), "config.json is missing")
    assert tree(store) == before, "init must not write a default config.json into a populated store"


@pytest.mark.parametrize("command", ["fsck", "ls", "gc", "put", "init", "get"])
@pytest.mark.parametrize("how", ["missing", "file", "symlink"])
def test_objects_missing_or_not_a_directory_is_an_integrity_failure(ckstore_bin, copy_of, tmp_path, how, command):
    store = copy_of()
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(store / "objects"), elsewhere)
    if how == "file":
        (store / "objects").write_bytes(b"not a folder")
    elif how == "symlink":
        (store / "objects").symlink_to(elsewhere)
    before, moved = tree(store), tree(elsewhere)
    work = tmp_path / "work"
    work.mkdir()
    proc = run(ckstore_bin, store, *dict(every_command(store, work))[command])
    assert proc.returncode == 3, f"{command} with objects/ {how}: exit {proc.returncode}: {proc.stderr}"
    words = {"missing": "objects/ is missing", "file": "objects/ is not a directory", "symlink": "objects/ is a symbolic link"}
    one_error_line(proc, str(store), words[how])
    assert tree(store) == before and tree(elsewhere) == moved


def test_missing_objects_of_a_store_without_chunks_is_recreated(ckstore_bin, tmp_path):
    store = tmp_path / "store"
    ok(run(ckstore_bin, store, "init"), "init")
    (store / "objects").rmdir()
    ok(run(ckstore_bin, store, "fsck"), "fsck")
    assert (store / "objects").is_dir()


def test_schema_newer_than_the_binary_changes_nothing(ckstore_bin, copy_of, tmp_path):
    store = copy_of()
    conn = sqlite3.connect(store / "ckstore.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = tree(store)
    work = tmp_path / "work"
    work.mkdir()
    for name, args in every_command(store, work):
        proc = run(ckstore_bin, store, *args, timeout=30)
        assert proc.returncode == 1, f"{name}: exit {proc.returncode}: {proc.stderr}"
        one_error_line(proc, str(store / "ckstore.db"), "schema version 99", "upgrade ckstore")
        assert tree(store) == before, f"{name} changed a store with a newer schema"


def test_damaged_schema_version_is_an_integrity_failure(ckstore_bin, copy_of):
    store = copy_of()
    for version in (-1, 0):
        conn = sqlite3.connect(store / "ckstore.db")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
        conn.close()
        before = tree(store)
        for args in (["ls"], ["init"], ["gc"]):
            proc = run(ckstore_bin, store, *args)
            assert proc.returncode == 3, f"user_version {version}, {args}: {proc.stderr}"
            one_error_line(proc, str(store / "ckstore.db"))
        assert tree(store) == before


# ---------------------------------------------------------------------------------------------
# Items 14 and 23: users without write access


@pytest.fixture(scope="module")
def as_nobody(ckstore_bin) -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run ckstore as user nobody")
    probe = subprocess.run([*NOBODY, ckstore_bin, "--version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run {ckstore_bin}: {probe.stderr!r}")
    return NOBODY


@pytest.fixture
def shared_dir():
    """A folder every user can enter and read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ckstore-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def store_with_commits_in_wal(binary: str, folder: Path, steps: int):
    """A store whose steps 2..`steps` are committed but only in ckstore.db-wal: a reader
    connection (returned; close it) holds a read transaction from before step 2, so no
    checkpoint can copy those commits into ckstore.db."""
    store = folder / "store"
    files = {}
    files[1] = write_safetensors(folder / "s1.safetensors", seed=1, floats=500)
    ok(run(binary, store, "init"), "init")
    ok(run(binary, store, "put", "--run", "r", "--step", "1", str(folder / "s1.safetensors")), "put 1")
    holder = sqlite3.connect(store / "ckstore.db", isolation_level=None)
    holder.execute("BEGIN")
    assert holder.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)
    for step in range(2, steps + 1):
        files[step] = write_safetensors(folder / f"s{step}.safetensors", seed=step, floats=500)
        ok(run(binary, store, "put", "--run", "r", "--step", str(step), str(folder / f"s{step}.safetensors")), f"put {step}")
    assert (store / "ckstore.db-wal").stat().st_size > 0
    # The database file itself still holds step 1 only (what an `immutable` open shows).
    check = sqlite3.connect(f"file:{store / 'ckstore.db'}?immutable=1", uri=True)
    assert check.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)
    check.close()
    return store, holder, files


def test_reader_without_write_access_sees_commits_in_the_wal(ckstore_bin, as_nobody, shared_dir):
    store, holder, files = store_with_commits_in_wal(ckstore_bin, shared_dir, steps=12)
    try:
        before = tree(store)
        listing = ok(run(ckstore_bin, store, "ls", "--run", "r", "--json", user=as_nobody), "ls as nobody")
        steps = [s["step"] for s in json.loads(listing.stdout)["snapshots"]]
        assert steps == list(range(1, 13)), f"nobody sees {steps}"
        got = ok(run(ckstore_bin, store, "get", "r@12", "-o", "-", user=as_nobody), "get r@12 as nobody")
        assert got.stdout == files[12]
        ok(run(ckstore_bin, store, "fsck", user=as_nobody), "fsck as nobody")
        assert tree(store) == before, "a reader without write access changed the store"
    finally:
        holder.close()


@pytest.mark.parametrize("how", ["shm-missing", "shm-unreadable", "wal-unreadable"])
def test_reader_that_cannot_read_the_wal_fails_instead_of_showing_stale_data(ckstore_bin, as_nobody, shared_dir, how):
    live, holder, _ = store_with_commits_in_wal(ckstore_bin, shared_dir, steps=4)
    try:
        store = shared_dir / "copy"
        shutil.copytree(live, store)  # a copy taken while the commits are in the WAL
    finally:
        holder.close()
    if how == "shm-missing":
        (store / "ckstore.db-shm").unlink()
    elif how == "shm-unreadable":
        (store / "ckstore.db-shm").chmod(0o600)
    else:
        (store / "ckstore.db-wal").chmod(0o600)
    before = tree(store)
    proc = run(ckstore_bin, store, "ls", "--run", "r", user=as_nobody)
    assert proc.returncode == 1, f"{how}: exit {proc.returncode}, stdout {proc.stdout!r}"
    one_error_line(proc, str(store), "without write access", "ckstore.db-wal")
    assert tree(store) == before


def test_reader_without_write_access_reads_a_checkpointed_store(ckstore_bin, as_nobody, shared_dir):
    store = shared_dir / "store"
    content = write_safetensors(shared_dir / "s.safetensors", seed=3)
    ok(run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(shared_dir / "s.safetensors")), "put")
    assert not (store / "ckstore.db-wal").exists()
    before = tree(store)
    got = ok(run(ckstore_bin, store, "get", "r@1", "-o", "-", user=as_nobody), "get as nobody")
    assert got.stdout == content
    assert tree(store) == before


@pytest.mark.parametrize("folder_writable", [False, True])
def test_writes_without_access_name_the_permission_problem(ckstore_bin, as_nobody, shared_dir, folder_writable):
    store = shared_dir / "store"
    write_safetensors(shared_dir / "s.safetensors", seed=3)
    write_safetensors(shared_dir / "t.safetensors", seed=4)
    ok(run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(shared_dir / "s.safetensors")), "put")
    if folder_writable:
        store.chmod(0o777)
        reason = "permission denied (ckstore.db is read-only for this user)"
    else:
        reason = "permission denied (the store folder is not writable by this user)"
    before = tree(store)
    for args in (
        ["put", "--run", "r", "--step", "2", str(shared_dir / "t.safetensors")],
        ["metric", "r@1", "loss=1"],
        ["rm", "r@1"],
        ["gc", "--keep-last", "1"],
    ):
        proc = run(ckstore_bin, store, *args, user=as_nobody)
        assert proc.returncode == 1, f"{args}: exit {proc.returncode}: {proc.stderr}"
        assert "readonly database" not in proc.stderr
        one_error_line(proc, f"cannot write to the store at {store}: {reason}")
        assert tree(store) == before


def test_reader_in_a_shared_folder_does_not_lock_the_owner_out(ckstore_bin, as_nobody, shared_dir):
    """A reader without write access to ckstore.db but with a writable folder must not create
    the -wal/-shm files: owned by the reader, they would make the owner's next put fail with
    "attempt to write a readonly database"."""
    owner_uid = 4242
    owner = ["setpriv", f"--reuid={owner_uid}", f"--regid={owner_uid}", "--clear-groups"]
    home = shared_dir / "owner"
    home.mkdir()
    os.chown(home, owner_uid, owner_uid)
    store = home / "store"
    for step in (1, 2):
        write_safetensors(shared_dir / f"s{step}.safetensors", seed=step)
    ok(run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(shared_dir / "s1.safetensors"), user=owner), "owner put")
    store.chmod(0o777)  # a folder anyone may write, a database only its owner may
    listing = ok(run(ckstore_bin, store, "ls", "--run", "r", "--json", user=as_nobody), "ls as nobody")
    assert [s["step"] for s in json.loads(listing.stdout)["snapshots"]] == [1]
    foreign = [p.name for p in store.iterdir() if p.stat().st_uid != owner_uid]
    assert foreign == [], f"the reader created {foreign}"
    ok(run(ckstore_bin, store, "put", "--run", "r", "--step", "2", str(shared_dir / "s2.safetensors"), user=owner), "owner put after a read")


def test_init_on_an_existing_read_only_store_says_it_exists(ckstore_bin, as_nobody, shared_dir):
    store = shared_dir / "store"
    ok(run(ckstore_bin, store, "init"), "init")
    before = tree(store)
    proc = run(ckstore_bin, store, "init", user=as_nobody)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == f"store already exists at {store}"
    assert tree(store) == before


# ---------------------------------------------------------------------------------------------
# Item 14 on read-only media (a read-only bind mount: needs root and mount(8))


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="ckstore-mount-probe-"))
    try:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode != 0:
            return False
        return subprocess.run(["umount", str(probe)], capture_output=True).returncode == 0
    finally:
        probe.rmdir()


@pytest.fixture
def read_only_view():
    """``read_only_view(src, dst)`` bind-mounts `src` read-only at `dst` (unmounted afterwards)."""
    if not _can_mount():
        pytest.skip("needs root and mount(8) for a read-only bind mount")
    mounted: list[Path] = []

    def mount(src: Path, dst: Path) -> Path:
        dst.mkdir()
        subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
        mounted.append(dst)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], check=True)
        return dst

    yield mount
    for dst in reversed(mounted):
        if subprocess.run(["umount", str(dst)]).returncode != 0:
            subprocess.run(["umount", "-l", str(dst)])


def test_read_only_media_show_commits_in_the_wal(ckstore_bin, tmp_path, read_only_view):
    live, holder, files = store_with_commits_in_wal(ckstore_bin, tmp_path, steps=6)
    media = tmp_path / "media"
    media.mkdir()
    try:
        shutil.copytree(live, media / "store")  # an archive taken while commits are in the WAL
        shutil.copytree(live, media / "no-shm")
    finally:
        holder.close()
    (media / "no-shm" / "ckstore.db-shm").unlink()
    before = tree(media)
    ro = read_only_view(media, tmp_path / "ro")
    store = ro / "store"
    listing = ok(run(ckstore_bin, store, "ls", "--run", "r", "--json"), "ls on read-only media")
    assert [s["step"] for s in json.loads(listing.stdout)["snapshots"]] == list(range(1, 7))
    assert ok(run(ckstore_bin, store, "get", "r@6", "-o", "-"), "get").stdout == files[6]
    proc = run(ckstore_bin, store, "put", "--run", "r", "--step", "7", str(tmp_path / "s1.safetensors"))
    assert proc.returncode == 1
    one_error_line(proc, f"cannot write to the store at {store}: read-only file system")
    proc = run(ckstore_bin, store, "init")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"store already exists at {store}", proc.stderr
    # Without its -shm the WAL cannot be read on read-only media: an error, not stale data.
    proc = run(ckstore_bin, ro / "no-shm", "ls", "--run", "r")
    assert proc.returncode == 1, proc.stdout
    one_error_line(proc, "ckstore.db-wal", "ckstore.db-shm is missing")
    assert tree(media) == before
