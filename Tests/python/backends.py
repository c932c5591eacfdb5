"""Support for the suites that run ckstore against live distributed backends (issue 10):
PostgreSQL metadata plus S3-compatible blobs, through ``postgres://user@host:port/db?blobs=s3://bucket/prefix``.

What a test gets from the :func:`dist_store` fixture: a :class:`DistributedStore`, a fresh store
location of its own — a new PostgreSQL database (``CREATE DATABASE``; when the role may not create
databases, a new schema in the configured database, ``schema=``) and a new S3 bucket — created
lazily by ``ckstore init`` and removed after the test (database dropped, every object and the
bucket deleted).

The servers come from the environment, as ``Tools/test.sh`` exports them after starting
``Tools/services/postgres.sh`` and ``Tools/services/ceph.sh``:

* ``CKSTORE_TEST_PG_URL`` (``postgresql://user@host:port/db``, no password) and ``PGPASSWORD``;
* ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``.

Every test using the fixture SKIPS, saying loudly why, when either server is not configured, or
when the ckstore binary does not support such locations yet ("backend not built": a one-time
probe ``ckstore --store 'postgres://…?blobs=s3://…' init`` in an empty folder fails with a usage
error, or takes the URL for a local folder name). A probe that fails any other way fails the
tests: a built backend that cannot create a store is a bug, not a reason to skip.

Nothing here needs a PostgreSQL or S3 Python package: the database is managed with the ``psql``
client (Debian ``postgresql-client``, installed with the server by ``Tools/services/postgres.sh``)
and the bucket with the small AWS Signature V4 client :class:`S3` (standard library only), which
the tests also use to damage a store behind ckstore's back (delete one blob object).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pytest

PG_URL = os.environ.get("CKSTORE_TEST_PG_URL", "").strip()
S3_ENDPOINT = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "").strip()
BANNER = "#" * 100


def loud(reason: str) -> str:
    """A skip reason nobody scrolls past (pytest -rs prints it; the banner makes it stand out)."""
    return f"\n{BANNER}\nDISTRIBUTED BACKEND SUITE SKIPPED: {reason}\n{BANNER}"


def not_configured_reason() -> str | None:
    """Why the live servers cannot be used, or None."""
    missing = []
    if not PG_URL:
        missing.append("CKSTORE_TEST_PG_URL (start Tools/services/postgres.sh and source its env file)")
    if not S3_ENDPOINT:
        missing.append("AWS_ENDPOINT_URL (start Tools/services/ceph.sh and source its env file)")
    elif not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        missing.append("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if missing:
        return "not set: " + "; ".join(missing) + ". Tools/test.sh run as root starts both servers."
    if shutil.which("psql") is None:
        return "the psql client is missing (Debian package postgresql-client; Tools/services/postgres.sh install)"
    return None


# ---------------------------------------------------------------------------------------------
# S3: a minimal Signature V4 client (path-style addressing), enough to manage and damage buckets.


class S3Error(Exception):
    def __init__(self, method: str, url: str, status: int, body: bytes):
        super().__init__(f"S3 {method} {url}: HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
        self.status = status


class S3:
    """Signs requests with AWS Signature V4 (service ``s3``) and sends them path-style to
    ``AWS_ENDPOINT_URL``. Credentials and region come from the environment."""

    def __init__(self, endpoint: str = S3_ENDPOINT):
        self.endpoint = endpoint.rstrip("/")
        self.host = urllib.parse.urlsplit(self.endpoint).netloc
        self.access = os.environ.get("AWS_ACCESS_KEY_ID", "")
        self.secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def request(self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None,
                body: bytes = b"", ok: Sequence[int] = (200, 204)) -> tuple[int, bytes]:
        path = "/" + urllib.parse.quote(bucket, safe="") + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        query = query or {}
        canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                                   for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": self.host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key_bytes = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        url = self.endpoint + path + ("?" + canonical_query if canonical_query else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                     headers={k: v for k, v in headers.items() if k != "host"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        if status not in ok:
            raise S3Error(method, url, status, data)
        return status, data

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix` (ListObjectsV2, page by page). A missing bucket lists nothing."""
        keys: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            status, data = self.request("GET", bucket, query=query, ok=(200, 404))
            if status == 404:
                return keys
            root = ET.fromstring(data)
            ns = {"s3": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {}
            find = (lambda e, n: e.find(f"s3:{n}", ns)) if ns else (lambda e, n: e.find(n))
            for item in (root.findall("s3:Contents", ns) if ns else root.findall("Contents")):
                keys.append(find(item, "Key").text)
            truncated = find(root, "IsTruncated")
            token_el = find(root, "NextContinuationToken")
            if truncated is None or truncated.text != "true" or token_el is None:
                return keys
            token = token_el.text

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.request("GET", bucket, key)[1]

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.request("PUT", bucket, key, body=body)

    def delete_object(self, bucket: str, key: str) -> None:
        self.request("DELETE", bucket, key, ok=(200, 204, 404))

    def bucket_exists(self, bucket: str) -> bool:
        return self.request("HEAD", bucket, ok=(200, 404))[0] == 200

    def delete_bucket(self, bucket: str) -> None:
        """Deletes every object, then the bucket (nothing when it does not exist)."""
        for key in self.list_keys(bucket):
            self.delete_object(bucket, key)
        self.request("DELETE", bucket, ok=(200, 204, 404))


# ---------------------------------------------------------------------------------------------
# PostgreSQL: databases (or schemas) for one test each, through psql.


def pg_url_with_database(database: str) -> str:
    """CKSTORE_TEST_PG_URL with its database replaced (query parameters kept)."""
    parts = urllib.parse.urlsplit(PG_URL)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def psql(sql: str, database: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs SQL with psql against CKSTORE_TEST_PG_URL (or another database on that server)."""
    url = pg_url_with_database(database) if database else PG_URL
    proc = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"psql {sql!r} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class PGNamespace:
    """Where one test's metadata lives: its own database, or its own schema when the role may
    not create databases."""

    database: str
    schema: str | None = None

    @staticmethod
    def create(tag: str) -> "PGNamespace":
        name = f"ckstore_e2e_{tag}"
        made = psql(f'CREATE DATABASE "{name}"', check=False)
        if made.returncode == 0:
            return PGNamespace(name)
        if "permission denied" not in made.stderr:
            raise AssertionError(f"cannot create the test database {name}: {made.stderr.strip()}")
        # The role lacks CREATEDB (an older Tools/services/postgres.sh): a schema of its own
        # in the configured database isolates the test as well.
        return PGNamespace(urllib.parse.urlsplit(PG_URL).path.lstrip("/"), schema=name)

    def drop(self) -> None:
        if self.schema:
            psql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE', check=False)
        else:
            psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)', check=False)

    def url(self, blobs: str) -> str:
        """The store location: ``postgres://user@host:port/db?[schema=…&]blobs=…``."""
        parts = urllib.parse.urlsplit(PG_URL)
        params = [p for p in parts.query.split("&") if p]
        if self.schema:
            params.append(f"schema={self.schema}")
        params.append(f"blobs={blobs}")
        return urllib.parse.urlunsplit(("postgres", parts.netloc, "/" + self.database, "&".join(params), ""))


# ---------------------------------------------------------------------------------------------
# One distributed store


@dataclass
class CKResult:
    """One finished ckstore command (stdout bytes, stderr text)."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def describe(self) -> str:
        status = f"killed by signal {-self.returncode}" if self.returncode < 0 else f"exited {self.returncode}"
        out = self.text if self.args[:1] != ("get",) else f"({len(self.stdout)} bytes)"
        return (f"`ckstore {' '.join(self.args)}` {status} after {self.seconds:.2f} s\n"
                f"  stderr: {self.stderr.strip() or '(empty)'}\n  stdout: {out.strip()[:2000]}")


@dataclass
class DistributedStore:
    """A fresh ``postgres://…?blobs=s3://…`` store of one test (not yet initialized)."""

    binary: str
    pg: PGNamespace
    bucket: str
    prefix: str
    s3: S3
    workdir: Path
    log: list[CKResult] = field(default_factory=list)

    @property
    def blobs(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def location(self) -> str:
        return self.pg.url(self.blobs)

    def command(self, args: Sequence[str]) -> list[str]:
        return [self.binary, "--store", self.location, *args]

    def run(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120,
            cwd: str | Path | None = None) -> CKResult:
        """Runs ckstore against this store (from `cwd`, default the test's work folder)."""
        started = time.monotonic()
        try:
            proc = subprocess.run(self.command(args), input=input, capture_output=True, timeout=timeout,
                                  cwd=str(cwd or self.workdir))
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"`ckstore {' '.join(args)}` did not finish within {timeout} s (hang?): {e.stderr!r}")
        result = CKResult(tuple(args), proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
                          time.monotonic() - started)
        self.log.append(result)
        if check and result.returncode != 0:
            raise AssertionError(result.describe())
        return result

    def json(self, *args: str) -> dict:
        result = self.run(*args, "--json")
        try:
            return json.loads(result.stdout)
        except ValueError as e:
            raise AssertionError(f"{result.describe()}\n  stdout is not JSON: {e}")

    def steps(self, run: str) -> dict[int, str]:
        """step → digest of a run's snapshots (empty when the run does not exist)."""
        result = self.run("ls", "--run", run, "--json", check=False)
        if result.returncode == 1 and "does not exist" in result.stderr:
            return {}
        if result.returncode != 0:
            raise AssertionError(result.describe())
        return {s["step"]: s["digest"] for s in json.loads(result.stdout)["snapshots"]}

    def get_bytes(self, ref: str, *extra: str) -> bytes:
        return self.run("get", ref, *extra, "-o", "-").stdout

    def blob_keys(self) -> list[str]:
        """Keys of the blob objects (``<prefix>objects/ab/<64 hex>``)."""
        return [k for k in self.s3.list_keys(self.bucket, self.prefix + "objects/")
                if re.fullmatch(re.escape(self.prefix) + r"objects/[0-9a-f]{2}/[0-9a-f]{64}", k)]

    def fsck_json(self, *extra: str) -> tuple[CKResult, dict]:
        result = self.run("fsck", *extra, "--json", check=False)
        try:
            return result, json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"fsck --json printed no JSON:\n{result.describe()}")

    def assert_fsck_clean(self, *extra: str, orphans: int | None = None) -> dict:
        """fsck exits 0 with no problem (orphans are notes); `orphans`: the orphan count expected."""
        result, report = self.fsck_json(*extra)
        assert result.returncode == 0 and report.get("ok") is True and not report.get("problems"), \
            f"fsck {' '.join(extra)} is not clean:\n{result.describe()}"
        if orphans is not None:
            assert report.get("orphan_blobs") == orphans, f"expected {orphans} orphan blobs:\n{result.describe()}"
        return report


def new_store(binary: str, workdir: Path, s3: S3, tag: str | None = None) -> DistributedStore:
    tag = tag or uuid.uuid4().hex[:12]
    pg = PGNamespace.create(tag)
    return DistributedStore(binary, pg, bucket=f"ckstore-e2e-{tag}", prefix="ckpt/", s3=s3, workdir=workdir)


def destroy_store(store: DistributedStore) -> None:
    """Drops the database (or schema) and deletes the bucket with everything in it."""
    store.pg.drop()
    try:
        store.s3.delete_bucket(store.bucket)
    except (S3Error, OSError) as e:  # pragma: no cover - best effort; the servers are throwaway
        print(f"backends.py: could not delete bucket {store.bucket}: {e}")


_PROBE: dict[str, str | None] = {}


def backend_skip_reason(binary: str) -> str | None:
    """Why this ckstore cannot run the suites (servers not configured, backend not built), or
    None. The probe runs once per binary; a built backend whose init fails fails the caller."""
    reason = not_configured_reason()
    if reason:
        return reason
    if binary in _PROBE:
        return _PROBE[binary]
    s3 = S3()
    try:
        s3.list_keys(f"ckstore-e2e-probe-{uuid.uuid4().hex[:8]}")
    except (S3Error, OSError) as e:
        pytest.fail(f"AWS_ENDPOINT_URL={S3_ENDPOINT} is set but the S3 service does not answer properly: {e}")
    ping = psql("SELECT 1", check=False)
    if ping.returncode != 0:
        pytest.fail(f"CKSTORE_TEST_PG_URL={PG_URL} is set but PostgreSQL does not answer: {ping.stderr.strip()}")
    with tempfile.TemporaryDirectory(prefix="ckstore-e2e-probe-") as cwd:
        store = new_store(binary, Path(cwd), s3, "probe" + uuid.uuid4().hex[:8])
        try:
            result = store.run("init", check=False, timeout=60)
            took_as_path = any(Path(cwd).iterdir())
            if result.returncode == 0 and took_as_path:
                reason = ("backend not built: this ckstore took the postgres://…?blobs=s3://… location for a local "
                          "folder name (it has no PostgreSQL/S3 store factory)")
            elif result.returncode == 2:
                reason = f"backend not built: `ckstore --store 'postgres://…?blobs=s3://…' init` says: {result.stderr.strip()}"
            elif result.returncode != 0:
                pytest.fail(f"the distributed backend is built but cannot create a store:\n{result.describe()}")
            else:
                listed = store.run("ls", check=False, timeout=60)
                if listed.returncode != 0:
                    pytest.fail(f"`init` succeeded but `ls` fails on the new store:\n{listed.describe()}")
                reason = None
        finally:
            destroy_store(store)
    _PROBE[binary] = reason
    return reason


@pytest.fixture
def s3_client() -> S3:
    return S3()


@pytest.fixture
def dist_store(ckstore_bin: str, tmp_path: Path):
    """A fresh distributed store (PostgreSQL database + S3 bucket) for one test, removed after.
    Skips loudly when the servers are not configured or the backend is not built."""
    reason = backend_skip_reason(ckstore_bin)
    if reason:
        pytest.skip(loud(reason))
    workdir = tmp_path / "work"
    workdir.mkdir()
    store = new_store(ckstore_bin, workdir, S3())
    try:
        yield store
    finally:
        destroy_store(store)


@pytest.fixture
def dist_store_factory(ckstore_bin: str, tmp_path: Path):
    """Factory for more than one distributed store in a test (all removed after)."""
    reason = backend_skip_reason(ckstore_bin)
    if reason:
        pytest.skip(loud(reason))
    made: list[DistributedStore] = []

    def make() -> DistributedStore:
        workdir = tmp_path / f"work{len(made)}"
        workdir.mkdir()
        store = new_store(ckstore_bin, workdir, S3())
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            destroy_store(store)


# ---------------------------------------------------------------------------------------------
# Deterministic snapshots: any process can regenerate RUN@STEP's file (the evaluator of the
# multi-host simulation recomputes LAWA inputs without sharing files with the trainers).

KiB = 1 << 10


def snapshot_tensors(run: str, step: int, scale: int = 1) -> dict[str, "np.ndarray"]:
    """RUN@STEP's tensors: an embedding shared by every step of the run (dedup), a per-step
    weight matrix, an F16 vector and an int64 step counter (copied, not averaged, by LAWA).
    `scale` multiplies the sizes (scale 1: about 1.4 MiB)."""
    import numpy as np

    run_seed = int.from_bytes(hashlib.sha256(run.encode()).digest()[:8], "little")
    shared = np.random.default_rng(run_seed).standard_normal(256 * KiB * scale, dtype=np.float32)
    rng = np.random.default_rng([run_seed, step])
    return {
        "emb": shared,
        "layer.w": (rng.standard_normal(96 * KiB * scale, dtype=np.float32) * (1 + step % 7)).astype(np.float32),
        "layer.b": rng.standard_normal(4 * KiB, dtype=np.float32).astype(np.float16),
        "step": np.array([step, -step], dtype=np.int64),
    }


def write_snapshot(path: str | Path, run: str, step: int, scale: int = 1) -> bytes:
    """Writes RUN@STEP's safetensors file and returns its bytes."""
    from reliability_support import write_safetensors

    write_safetensors(path, snapshot_tensors(run, step, scale), metadata={"run": run, "step": str(step)})
    return Path(path).read_bytes()


def reference_lawa(paths: Sequence[str | Path]) -> dict[str, tuple[str, list[int], bytes]]:
    """The LAWA (uniform mean) of safetensors files, from the independent numpy reference
    (Tests/reference/ckref.py): tensor name → (dtype, shape, bytes)."""
    import sys

    reference = str(Path(__file__).resolve().parents[1] / "reference")
    if reference not in sys.path:
        sys.path.insert(0, reference)
    import ckref

    return ckref.average_files("lawa", [str(p) for p in paths])


def assert_matches_reference(data: bytes, expected: dict[str, tuple[str, list[int], bytes]], what: str) -> None:
    """A safetensors file's tensors equal the reference bit for bit."""
    (n,) = __import__("struct").unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    assert set(header) == set(expected), f"{what}: tensors {sorted(header)} != {sorted(expected)}"
    for name, (dtype, shape, raw) in expected.items():
        entry = header[name]
        got = body[entry["data_offsets"][0]:entry["data_offsets"][1]]
        assert entry["dtype"] == dtype and entry["shape"] == shape, f"{what}: {name} is {entry}, expected {dtype} {shape}"
        assert got == raw, f"{what}: tensor {name} ({dtype}) differs from the numpy reference"
