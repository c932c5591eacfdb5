"""Helpers for the reliability tests (test_crash_safety.py, test_concurrency.py).

* :class:`CK` runs ckstore against one store and keeps a log of every command it ran (arguments,
  exit status, stdout, stderr, wall time), so that a test can check every output for SQLite
  lock errors and every failure message names the command, its exit status and its stderr.
* :func:`write_safetensors` writes a safetensors file and returns its SHA-256.
* :func:`snapshot_sha256` streams ``ckstore get REF -o -`` and hashes what comes out.

Knobs (environment variables) for longer local runs; the defaults keep the suite short enough
for CI with a debug build:

* ``CKSTORE_STRESS_SEED``: seed of every random choice (default 20240611).
* ``CKSTORE_STRESS_ITERATIONS``: kill iterations of the crash loop (default 20).
* ``CKSTORE_STRESS_ROUNDS``: rounds of the gc-vs-put race (default 12).
* ``CKSTORE_STRESS_SECONDS``: duration of the trainer/evaluator/gc mix (default 20).
* ``CKSTORE_STRESS_TWO_RUN_STEPS``: snapshots per trainer in the two-runs test (default 12).
* ``CKSTORE_STRESS_CACHE_SECONDS``: duration of the cached-average-vs-gc loop (default 5).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: Strings that must never appear in any ckstore output: SQLite lock contention reaching the user.
LOCK_ERROR = re.compile(r"database is locked|database table is locked|\bbusy\b|SQLITE_BUSY|SQLITE_LOCKED", re.IGNORECASE)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def stress_seed() -> int:
    return env_int("CKSTORE_STRESS_SEED", 20240611)


# ---------------------------------------------------------------------------------------------
# Running ckstore


@dataclass
class Result:
    """One finished ckstore command."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float
    started: float = 0.0  # time.monotonic() at start
    note: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def describe(self) -> str:
        status = f"killed by signal {-self.returncode}" if self.returncode < 0 else f"exited {self.returncode}"
        out = self.text if self.args[:1] != ("get",) else (f"({len(self.stdout)} bytes)" if self.stdout else "")
        if len(out) > 2000:
            out = out[:2000] + f"... ({len(self.stdout)} bytes)"
        lines = [f"`ckstore {' '.join(self.args)}` {status} after {self.seconds:.2f} s"]
        if self.note:
            lines.append(f"  ({self.note})")
        lines.append(f"  stderr: {self.stderr.strip() or '(empty)'}")
        if out.strip():
            lines.append(f"  stdout: {out.strip()}")
        return "\n".join(lines)


class Proc:
    """A ckstore command running in the background (see :meth:`CK.start`)."""

    def __init__(self, ck: "CK", args: tuple[str, ...], popen: subprocess.Popen, started: float):
        self.ck = ck
        self.args = args
        self.popen = popen
        self.started = started
        self.result: Result | None = None

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> bool:
        """SIGKILL unless it has been reaped already. (It may still have exited just before the
        signal: its exit status says which, -9 when the signal killed it.)"""
        if self.popen.poll() is not None:
            return False
        try:
            self.popen.send_signal(signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - exited meanwhile
            return False
        return True

    def wait(self, timeout: float | None = 120) -> Result:
        if self.result is None:
            if self.popen.stdin is not None and self.popen.stdin.closed:
                self.popen.stdin = None  # closed by the caller: communicate() must not flush it
            try:
                out, err = self.popen.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                out, err = self.popen.communicate()
                raise AssertionError(f"`ckstore {' '.join(self.args)}` did not finish within {timeout} s: {err.decode(errors='replace')}")
            ended = time.monotonic()
            self.result = Result(self.args, self.popen.returncode, out, err.decode("utf-8", "replace"), ended - self.started, self.started)
            self.ck._record(self.result)
        return self.result


class CK:
    """Runs ckstore against one store and logs every command (thread-safe)."""

    def __init__(self, binary: str, store: str):
        self.binary = binary
        self.store = store
        self._lock = threading.Lock()
        self.log: list[Result] = []

    def _record(self, result: Result) -> None:
        with self._lock:
            self.log.append(result)

    def command(self, args: Sequence[str]) -> list[str]:
        return [self.binary, "--store", self.store, *args]

    def run(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120) -> Result:
        started = time.monotonic()
        try:
            proc = subprocess.run(self.command(args), input=input, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"`ckstore {' '.join(args)}` did not finish within {timeout} s: {e.stderr!r}")
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
                        time.monotonic() - started, started)
        self._record(result)
        if check and result.returncode != 0:
            raise AssertionError(result.describe())
        return result

    def start(self, *args: str) -> Proc:
        """Starts a command in the background (stdin closed)."""
        started = time.monotonic()
        popen = subprocess.Popen(self.command(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return Proc(self, tuple(args), popen, started)

    def start_with_stdin(self, *args: str) -> Proc:
        """Starts a command in the background; the caller writes `proc.popen.stdin` and closes it."""
        started = time.monotonic()
        popen = subprocess.Popen(self.command(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return Proc(self, tuple(args), popen, started)

    def json(self, *args: str) -> dict:
        result = self.run(*args, "--json")
        try:
            return json.loads(result.stdout)
        except ValueError as e:
            raise AssertionError(f"{result.describe()}\n  stdout is not JSON: {e}")

    # ----- common queries

    def init(self, config: Mapping[str, object] | None = None) -> None:
        """Creates the store; merges `config` into its config.json (nested dicts merge)."""
        self.run("init")
        if config:
            path = Path(self.store) / "config.json"
            current = json.loads(path.read_text())
            for key, value in config.items():
                if isinstance(value, dict):
                    current.setdefault(key, {}).update(value)
                else:
                    current[key] = value
            path.write_text(json.dumps(current, indent=2) + "\n")

    def steps(self, run: str) -> dict[int, str]:
        """step → digest of a run's snapshots (empty when the run does not exist)."""
        result = self.run("ls", "--run", run, "--json", check=False)
        if result.returncode == 1 and "does not exist" in result.stderr:
            return {}
        if result.returncode != 0:
            raise AssertionError(result.describe())
        return {s["step"]: s["digest"] for s in json.loads(result.stdout)["snapshots"]}

    def fsck(self, full: bool = False) -> Result:
        result = self.run("fsck", *(["--full"] if full else []), check=False)
        if result.returncode != 0 or not re.search(r"^ok: ", result.text, re.MULTILINE):
            raise AssertionError(f"fsck{' --full' if full else ''} failed:\n{result.describe()}")
        return result

    def stats(self) -> dict:
        return self.json("stats")

    def lock_errors(self) -> list[Result]:
        """Logged commands whose output mentions a locked or busy database."""
        with self._lock:
            # (get's stdout is the snapshot itself: only its stderr is text.)
            return [r for r in self.log
                    if LOCK_ERROR.search(r.stderr) or (r.args[:1] != ("get",) and LOCK_ERROR.search(r.text))]

    def assert_no_lock_errors(self) -> None:
        bad = self.lock_errors()
        assert not bad, f"{len(bad)} command(s) reported a locked/busy database:\n" + "\n".join(r.describe() for r in bad[:10])


def snapshot_sha256(ck: CK, *args: str) -> tuple[Result, str | None]:
    """Runs ``ckstore get ARGS -o -`` streaming stdout into SHA-256 (bounded memory).

    Returns the result (stdout left empty) and the hex digest of what was written (None when
    the command failed)."""
    started = time.monotonic()
    popen = subprocess.Popen(ck.command([*args, "-o", "-"]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    h = hashlib.sha256()
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(popen.stderr.read()), daemon=True)
    reader.start()
    while True:
        block = popen.stdout.read(1 << 20)
        if not block:
            break
        h.update(block)
    popen.wait(timeout=300)
    reader.join()
    result = Result((*args, "-o", "-"), popen.returncode, b"", b"".join(err_chunks).decode("utf-8", "replace"),
                    time.monotonic() - started, started)
    ck._record(result)
    return result, (h.hexdigest() if popen.returncode == 0 else None)


def assert_reads_back(ck: CK, ref: str, expected_sha256: str, what: str = "") -> None:
    """`get REF` exits 0 and its bytes hash to `expected_sha256`."""
    result, digest = snapshot_sha256(ck, "get", ref)
    label = f"{ref}{' (' + what + ')' if what else ''}"
    assert result.returncode == 0, f"{label} does not read back:\n{result.describe()}"
    assert digest == expected_sha256, f"{label} reads back different bytes: sha256 {digest}, source file {expected_sha256}"


# ---------------------------------------------------------------------------------------------
# Snapshot files


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> str:
    """Writes a safetensors file (tensors in the given order) and returns its SHA-256 (hex)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
             np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    arrays = []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        arrays.append(array)
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for part in [len(text).to_bytes(8, "little"), text, *(a.data for a in arrays)]:
            f.write(part)
            h.update(part)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def object_files(store: str | Path) -> set[str]:
    """Names of every file under objects/ (blobs and temporary files)."""
    root = Path(store) / "objects"
    return {p.name for d in root.iterdir() if d.is_dir() for p in d.iterdir()} if root.exists() else set()


def temporary_files(store: str | Path) -> list[str]:
    return sorted(n for n in object_files(store) if ".tmp-" in n)


def parse_put_summary(stderr: str) -> tuple[int, int] | None:
    """(new chunks, dedup hits) from put's summary line, or None."""
    m = re.search(r"(\d+) new chunks?, (\d+) dedup hits?", stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def acknowledged_digest(result: Result) -> str | None:
    """The digest a put acknowledged: it exited 0 and printed `sha256:<64 hex>`."""
    if result.returncode != 0:
        return None
    m = re.fullmatch(r"(sha256:[0-9a-f]{64})\s*", result.text)
    assert m, f"put exited 0 without printing a digest:\n{result.describe()}"
    return m.group(1)
