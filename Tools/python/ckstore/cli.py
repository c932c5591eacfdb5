"""Finding and running the ckstore binary.

The binary is ``binary=`` when given, else ``$CKSTORE_BIN``, else ``ckstore`` on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading

from .errors import CKStoreError, UnsupportedByBinary

__all__ = ["find_binary", "base_command", "error_text", "run", "read_stdout", "put_supports_parts",
           "put_supports_dirs", "require_parts", "require_dirs"]

_BUILD_HINT = ("build it with `swift build -c release` in the ckstore repository (the binary is then "
               ".build/release/ckstore), then pass binary=..., set CKSTORE_BIN or put it on PATH")


def find_binary(binary: str | os.PathLike | None = None) -> str:
    """Return the ckstore executable: ``binary`` if given, else ``$CKSTORE_BIN``, else
    ``ckstore`` found on PATH. Raises ``FileNotFoundError`` (saying how to build it) when none
    is found. A given ``binary``/``$CKSTORE_BIN`` is returned as is; a missing file there is
    reported when a command runs."""
    if binary is not None:
        return os.fspath(binary)
    env = os.environ.get("CKSTORE_BIN")
    if env:
        return env
    found = shutil.which("ckstore")
    if found:
        return found
    raise FileNotFoundError(f"ckstore binary not found (no binary=, no $CKSTORE_BIN, none on PATH): {_BUILD_HINT}")


def base_command(binary: str | os.PathLike | None, store: str | os.PathLike | None) -> list[str]:
    """``[binary, "--store", store]`` (without ``--store`` when ``store`` is None)."""
    cmd = [find_binary(binary)]
    if store is not None:
        cmd += ["--store", os.fspath(store)]
    return cmd


def error_text(stderr: str) -> str:
    """The most useful part of ckstore's stderr: its 'error:' lines, else the last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return " | ".join(errors or lines[-1:]) or "(no error output)"


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise :class:`CKStoreError` (``what`` failed …) when it exits non-zero."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        raise CKStoreError(f"{what} failed (exit {proc.returncode}): {error_text(stderr)}", proc.returncode, stderr)
    return proc


def read_stdout(cmd: list[str], what: str) -> bytearray:
    """Run ``cmd`` and return its whole standard output as a writable ``bytearray`` (read in
    1 MiB blocks; stderr goes to a temporary file so neither pipe can fill up)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        chunks = bytearray()
        while True:
            block = proc.stdout.read(1 << 20)
            if not block:
                break
            chunks += block
        proc.stdout.close()
        rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if rc != 0:
        raise CKStoreError(f"{what} failed (exit {rc}): {error_text(stderr)}", rc, stderr)
    return chunks


_help_cache: dict[str, str] = {}
_help_lock = threading.Lock()


def _put_help(binary: str | os.PathLike | None) -> str:
    """``ckstore put --help`` of this binary ('' when it fails), cached per binary path."""
    path = find_binary(binary)
    with _help_lock:
        if path not in _help_cache:
            try:
                proc = subprocess.run([path, "put", "--help"], capture_output=True, timeout=60)
                text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
                _help_cache[path] = text if proc.returncode == 0 else ""
            except (OSError, subprocess.TimeoutExpired):
                _help_cache[path] = ""
        return _help_cache[path]


def put_supports_parts(binary: str | os.PathLike | None = None) -> bool:
    """Whether this binary's ``ckstore put --help`` documents ``--parts`` (issue 11: per-rank
    parts of a snapshot)."""
    return "--parts" in _put_help(binary)


def put_supports_dirs(binary: str | os.PathLike | None = None) -> bool:
    """Whether this binary's ``ckstore put`` takes a directory (its usage line names ``DIR``;
    issue 11: snapshots of several files)."""
    return re.search(r"\bDIR\b", _put_help(binary).split("\n\n", 1)[0]) is not None


def require_parts(binary: str | os.PathLike | None, what: str) -> None:
    """Raise :class:`UnsupportedByBinary` when the binary's ``put`` lacks ``--parts``."""
    if not put_supports_parts(binary):
        raise UnsupportedByBinary(
            f"{what} needs a ckstore whose `put` has --parts (issue 11: per-rank parts); "
            f"{find_binary(binary)} does not: rebuild ckstore from a newer checkout")


def require_dirs(binary: str | os.PathLike | None, what: str) -> None:
    """Raise :class:`UnsupportedByBinary` when the binary's ``put`` cannot store a directory."""
    if not put_supports_dirs(binary):
        raise UnsupportedByBinary(
            f"{what} needs a ckstore whose `put` stores a directory (`put ... DIR`, issue 11); "
            f"{find_binary(binary)} does not: rebuild ckstore from a newer checkout")
