"""Helpers for tests about caching itself: since `second-hit` became the default cache policy,
a first query is cached only in a store whose config.json says `always`."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""The prefix that runs a command as user nobody."""


def cache_first_requests(store: str | Path) -> None:
    """Sets `"cache_policy": "always"` in `<store>/config.json` (the store must exist)."""
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["cache_policy"] = "always"
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_f32(path: Path, step: int, n: int = 5000) -> None:
    """A safetensors file with one F32 tensor "w" of `n` values step + i/1000."""
    data = struct.pack(f"<{n}f", *[step + i / 1000 for i in range(n)])
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-(8 + len(header)) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@contextmanager
def store_outside_tmp(ckstore_bin: str, prefix: str) -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess]]]:
    """A store holding run r at steps 0, 10 and 20 in a fresh world-readable folder (pytest's
    tmp_path is private to root, so user nobody could not reach it), with a `run(*args,
    user=None)` that runs ckstore on it (as `user`, e.g. NOBODY). Skips unless root with
    setpriv(1); removes the folder afterwards."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run ckstore as user nobody")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        folder.chmod(0o755)
        store = folder / "store"

        def run(*args, user=None):
            return subprocess.run([*(user or []), ckstore_bin, "--store", str(store), *args], capture_output=True)

        assert run("init").returncode == 0
        for step in (0, 10, 20):
            write_f32(folder / f"s{step}.safetensors", step)
            assert run("put", "--run", "r", "--step", str(step), str(folder / f"s{step}.safetensors")).returncode == 0
        yield store, run
    finally:
        shutil.rmtree(folder, ignore_errors=True)
