"""S3-backed blobs through the CLI, against a live S3 service (Ceph RGW from Tools/services/ceph.sh).

Runs only when CKSTORE_TEST_S3 is set, with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY (and AWS_REGION) in the environment. The store locations are
``sqlite:///path?blobs=s3://bucket/prefix``: SQLite metadata in a local folder, blobs in S3.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("CKSTORE_TEST_S3", "") in ("", "0"),
    reason="live S3 tests need CKSTORE_TEST_S3=1 and AWS_ENDPOINT_URL/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (a local Ceph RGW)",
)

BUCKET = f"ckstore-pytest-{uuid.uuid4().hex[:10]}"


PG_URL = os.environ.get("CKSTORE_TEST_PG_URL", "")
KINDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.skipif(not PG_URL, reason="PostgreSQL+S3 needs CKSTORE_TEST_PG_URL (Tools/services/postgres.sh)")),
]


def s3_location(tmp_path: Path, name: str, kind: str = "sqlite") -> str:
    """A fresh store location with blobs under a unique S3 prefix: SQLite metadata in a local
    folder, or PostgreSQL metadata in a fresh schema."""
    tag = uuid.uuid4().hex[:8]
    blobs = f"s3://{BUCKET}/{name}-{tag}"
    if kind == "postgres":
        url = PG_URL.replace("postgresql://", "postgres://", 1)
        return f"{url}?blobs={blobs}&schema=s3test_{tag}"
    return f"sqlite://{tmp_path / name}?blobs={blobs}"


def safetensors(path: Path, tensors: dict[str, bytes]) -> bytes:
    """Writes F32 tensors (raw little-endian bytes) as a safetensors file; returns its bytes."""
    header, data, offset = {}, b"", 0
    for name, raw in tensors.items():
        header[name] = {"dtype": "F32", "shape": [len(raw) // 4], "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header).encode()
    blob = struct.pack("<Q", len(text)) + text + data
    path.write_bytes(blob)
    return blob


def floats(count: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return struct.pack(f"<{count}f", *(rng.uniform(-1, 1) for _ in range(count)))


def run(ckstore_bin: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([ckstore_bin, *args], capture_output=True)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"ckstore {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def get_bytes(ckstore_bin: str, store: str, ref: str) -> bytes:
    return run(ckstore_bin, "--store", store, "get", ref, "-o", "-").stdout


@pytest.mark.parametrize("kind", KINDS)
def test_copy_local_to_s3_and_back(ckstore_bin: str, tmp_path: Path, kind: str) -> None:
    local = str(tmp_path / "local")
    shared = floats(300_000, 1)
    a = safetensors(tmp_path / "a.st", {"w": shared, "b": floats(5000, 2)})
    b = safetensors(tmp_path / "b.st", {"w": shared, "b": floats(5000, 3)})
    run(ckstore_bin, "--store", local, "put", "--run", "r", "--step", "1", "--metric", "loss=1.25", str(tmp_path / "a.st"))
    run(ckstore_bin, "--store", local, "put", "--run", "r", "--step", "2", str(tmp_path / "b.st"))

    remote = s3_location(tmp_path, "remote", kind)
    first = json.loads(run(ckstore_bin, "copy", "--from", local, "--to", remote, "--json").stdout)
    assert first["snapshots_copied"] == 2 and first["blobs_copied"] >= 3 and first["metrics_copied"] == 1
    assert get_bytes(ckstore_bin, remote, "r@1") == a
    assert get_bytes(ckstore_bin, remote, "r@2") == b
    if kind == "sqlite":
        assert not any((tmp_path / "remote" / "objects").iterdir()), "blobs must go to S3, not the local folder"
    run(ckstore_bin, "--store", remote, "fsck")
    again = json.loads(run(ckstore_bin, "copy", "--from", local, "--to", remote, "--json").stdout)
    assert again["snapshots_unchanged"] == 2 and again["blobs_copied"] == 0

    # Pull it back into a fresh local store: same digests, same bytes, metrics along.
    pulled = str(tmp_path / "pulled")
    back = json.loads(run(ckstore_bin, "copy", "--from", remote, "--to", pulled, "--run", "r", "--json").stdout)
    assert back["snapshots_copied"] == 2 and back["blobs_copied"] == first["blobs_copied"]
    assert get_bytes(ckstore_bin, pulled, "r@2") == b
    ls = json.loads(run(ckstore_bin, "--store", pulled, "ls", "--run", "r", "--json").stdout)
    assert "1.25" in json.dumps(ls)
    run(ckstore_bin, "--store", pulled, "fsck")


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_put_mid_upload_leaves_acknowledged_snapshots_intact(ckstore_bin: str, tmp_path: Path, kind: str) -> None:
    store = s3_location(tmp_path, "kill", kind)
    acknowledged: dict[str, bytes] = {}
    # The first put (as large as the killed ones) measures how long a put takes with this
    # binary (debug or release), so that the kills land inside the upload phase.
    first = safetensors(tmp_path / "first.st", {"w": floats(10_000_000, 10)})
    started = time.perf_counter()
    run(ckstore_bin, "--store", store, "put", "--run", "r", "--step", "0", str(tmp_path / "first.st"))
    duration = time.perf_counter() - started
    acknowledged["r@0"] = first
    rng = random.Random(42)
    killed = 0
    iterations = int(os.environ.get("CKSTORE_S3_KILL_ITERATIONS", "8"))
    for i in range(1, iterations + 1):
        # About 40 MB of incompressible floats: 10 chunks of 4 MiB, several uploads in flight.
        payload = safetensors(tmp_path / f"big{i}.st", {"w": floats(10_000_000, 100 + i)})
        proc = subprocess.Popen(
            [ckstore_bin, "--store", store, "put", "--run", "r", "--step", str(i), str(tmp_path / f"big{i}.st")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == 0:
            acknowledged[f"r@{i}"] = payload  # finished before the kill
        else:
            killed += 1
        # Every acknowledged snapshot reads back byte for byte; fsck finds nothing wrong.
        for ref, content in acknowledged.items():
            assert get_bytes(ckstore_bin, store, ref) == content, ref
        fsck = run(ckstore_bin, "--store", store, "fsck", "--json", check=False)
        assert fsck.returncode == 0, fsck.stderr + fsck.stdout.decode()
        (tmp_path / f"big{i}.st").unlink()
    assert killed >= 1, "no put was killed mid-upload: make the files larger"
    # gc collects what the killed puts uploaded and never committed.
    before = json.loads(run(ckstore_bin, "--store", store, "stats", "--json").stdout)
    assert before["orphan_blobs"] > 0, f"no killed put left an uploaded blob behind: {before}"
    run(ckstore_bin, "--store", store, "gc", "--all-orphans")
    stats = json.loads(run(ckstore_bin, "--store", store, "stats", "--json").stdout)
    assert stats["orphan_blobs"] == 0, stats
    run(ckstore_bin, "--store", store, "fsck")
    for ref, content in acknowledged.items():
        assert get_bytes(ckstore_bin, store, ref) == content, ref
