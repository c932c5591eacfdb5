"""The PostgreSQL metadata backend end to end, through the CLI, against a live server
(CKSTORE_TEST_PG_URL and PGPASSWORD, as Tools/services/postgres.sh writes them; skipped
without). Each test uses its own PostgreSQL schema (`schema=`) and its own blob folder
(`blobs=file:///…`), so tests do not see each other.

The race test runs separate processes with separate connections: a put streamed through stdin
and paused after its dedup hits on another snapshot's chunks (holding the shared store lock on
its own PostgreSQL connection), and an rm and a gc of that snapshot started from other
processes. The blob the paused put matched must survive: rm and gc wait for the put (a
`--wait 1` attempt fails naming the put's pid and host), and the put's snapshot reads back
byte-exact afterwards with fsck --full clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

PG_URL = os.environ.get("CKSTORE_TEST_PG_URL", "")
pytestmark = pytest.mark.skipif(
    not PG_URL, reason="CKSTORE_TEST_PG_URL is not set (start Tools/services/postgres.sh and source its env file)")

MiB = 1 << 20


def safetensors(tensors: dict[str, bytes]) -> bytes:
    """A safetensors file of U8 vectors."""
    header, offset = {}, 0
    for name, data in tensors.items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(tensors.values())


def location(tmp_path: Path) -> str:
    schema = "py_" + uuid.uuid4().hex
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}&blobs=file://{tmp_path / 'blobs'}"


def run(ckstore_bin: str, store: str, *args: str, check: bool = True, input: bytes | None = None):
    proc = subprocess.run([ckstore_bin, "--store", store, *args], input=input, capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ckstore {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return proc


def test_init_creates_the_schema_and_every_command_works(ckstore_bin, tmp_path):
    store = location(tmp_path)
    missing = run(ckstore_bin, store, "ls", check=False)
    assert missing.returncode == 1 and b"no store" in missing.stderr, missing.stderr
    run(ckstore_bin, store, "init")
    assert run(ckstore_bin, store, "ls").returncode == 0
    rng = __import__("random").Random(1)
    shared = bytes(rng.getrandbits(8) for _ in range(64 * 1024)) * 80  # 5 MiB: two chunks
    files = []
    for step in range(1, 7):
        data = safetensors({"a": shared, "b": bytes([step]) * (1 * MiB)})
        path = tmp_path / f"s{step}.safetensors"
        path.write_bytes(data)
        files.append((step, path, data))
        run(ckstore_bin, store, "put", "--run", "r", "--step", str(step), str(path))
    again = run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(files[0][1]))
    assert b"unchanged" in again.stderr + again.stdout
    conflict = run(ckstore_bin, store, "put", "--run", "r", "--step", "1", str(files[1][1]), check=False)
    assert conflict.returncode == 1 and b"--force" in conflict.stderr
    out = tmp_path / "out.safetensors"
    run(ckstore_bin, store, "get", "r@3", "-o", str(out))
    assert out.read_bytes() == files[2][2]
    listing = json.loads(run(ckstore_bin, store, "ls", "--run", "r", "--json").stdout)
    assert len(json.dumps(listing)) > 0 and "6" in json.dumps(listing), listing
    lawa = tmp_path / "lawa.safetensors"
    run(ckstore_bin, store, "get", "--run", "r", "--lawa", "k=6,stride=1", "--at", "6", "-o", str(lawa))
    # Bit-exact against the same average computed by a local store.
    local = str(tmp_path / "local")
    for step, path, _ in files:
        run(ckstore_bin, local, "put", "--run", "r", "--step", str(step), str(path))
    expected = tmp_path / "lawa-local.safetensors"
    run(ckstore_bin, local, "get", "--run", "r", "--lawa", "k=6,stride=1", "--at", "6", "-o", str(expected))
    assert lawa.read_bytes() == expected.read_bytes()
    run(ckstore_bin, store, "get", "--run", "r", "--lawa", "k=6,stride=1", "--at", "6", "-o", str(lawa))  # cached
    assert lawa.read_bytes() == expected.read_bytes()
    run(ckstore_bin, store, "rm", "r@1")
    run(ckstore_bin, store, "gc")
    fsck = run(ckstore_bin, store, "fsck", "--full", check=False)
    assert fsck.returncode == 0, fsck.stderr
    run(ckstore_bin, store, "get", "r@6", "-o", str(out))
    assert out.read_bytes() == files[5][2]


def test_gc_from_another_process_never_deletes_a_blob_a_paused_put_has_matched(ckstore_bin, tmp_path):
    store = location(tmp_path)
    run(ckstore_bin, store, "init")
    rng = __import__("random").Random(2)
    shared = bytes(rng.getrandbits(8) for _ in range(4 * MiB))
    a = safetensors({"a": shared, "x": b"\x01" * MiB})
    b = safetensors({"a": shared, "x": b"\x02" * MiB})
    (tmp_path / "a.safetensors").write_bytes(a)
    run(ckstore_bin, store, "put", "--run", "a", "--step", "1", str(tmp_path / "a.safetensors"))
    # B streams its header and the shared chunk, then pauses holding the store lock.
    put = subprocess.Popen([ckstore_bin, "--store", store, "put", "--run", "b", "--step", "1", "-"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    header_len = 8 + struct.unpack("<Q", b[:8])[0]
    put.stdin.write(b[:header_len + 4 * MiB])
    put.stdin.flush()
    time.sleep(1.5)  # the worker has hashed the shared chunk and found A's row
    assert put.poll() is None
    # Another process (its own connection) cannot get the exclusive lock: it names the holder.
    quick = run(ckstore_bin, store, "rm", "--wait", "1", "a@1", check=False)
    assert quick.returncode == 1, quick.stderr
    message = quick.stderr.decode()
    assert f"put (pid {put.pid} on host {socket.gethostname()}" in message, message
    rm = subprocess.Popen([ckstore_bin, "--store", store, "rm", "a@1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gc = subprocess.Popen([ckstore_bin, "--store", store, "gc"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert rm.poll() is None and gc.poll() is None, "rm/gc ran while a put held the store lock"
    put.stdin.write(b[header_len + 4 * MiB:])
    put.stdin.close()
    assert put.wait(30) == 0, put.stderr.read().decode()
    assert rm.wait(30) == 0, rm.stderr.read().decode()
    assert gc.wait(30) == 0, gc.stderr.read().decode()
    out = tmp_path / "b.out"
    run(ckstore_bin, store, "get", "b@1", "-o", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(b).digest()
    fsck = run(ckstore_bin, store, "fsck", "--full", check=False)
    assert fsck.returncode == 0, fsck.stderr


def test_a_password_in_the_location_is_refused_and_not_repeated(ckstore_bin, tmp_path):
    url = PG_URL.replace("://", "://ckstore:sekrit-pass-123@", 1) if "@" not in PG_URL else \
        PG_URL.replace("@", ":sekrit-pass-123@", 1)
    proc = run(ckstore_bin, url + ("&" if "?" in url else "?") + "blobs=file:///tmp/x", "ls", check=False)
    assert proc.returncode == 2
    assert b"sekrit-pass-123" not in proc.stderr + proc.stdout
    assert b"PGPASSWORD" in proc.stderr
