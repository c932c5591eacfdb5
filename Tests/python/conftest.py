"""Shared fixtures for the Python tests of ckstore (the trainer hook and the demo's tools).

The ckstore binary is ``$CKSTORE_BIN`` when set, else ``<swift build --show-bin-path>/ckstore``
run from the repository root (build first: ``swift build``). Tools/python is put on ``sys.path``
so ``import ckstore`` works without installing the package (Tools/ too, for the demo's modules).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / "Tools"
PYTHON_PACKAGE = REPO_ROOT / "Tools" / "python"
for _path in (TOOLS, PYTHON_PACKAGE):  # the package is importable without installing it
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def _locate_binary() -> Path:
    env = os.environ.get("CKSTORE_BIN")
    if env:
        return Path(env)
    path = os.environ.get("PATH", "")
    if "/opt/swift/usr/bin" not in path.split(os.pathsep):
        path = "/opt/swift/usr/bin" + os.pathsep + path
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PATH": path}, check=True)
    return Path(out.stdout.strip()) / "ckstore"


@pytest.fixture(scope="session")
def ckstore_bin() -> str:
    """Absolute path of the ckstore executable under test (fails clearly when not built)."""
    try:
        binary = _locate_binary()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"cannot locate ckstore (set CKSTORE_BIN or install swift): {e}")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"ckstore binary not found at {binary}: run 'swift build' or set CKSTORE_BIN")
    return str(binary.resolve())


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh, not yet created store directory for one test."""
    return str(tmp_path / "store")


@pytest.fixture
def ckstore(ckstore_bin: str, store: str):
    """Run ckstore against the test's store: ``ckstore("ls", "--json")`` → CompletedProcess
    (stdout as bytes, stderr as text); ``check=False`` lets a failure through."""

    def run(*args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([ckstore_bin, "--store", store, *args], input=input, capture_output=True)
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"ckstore {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    return run


@pytest.fixture
def slow_bin(ckstore_bin: str, tmp_path: Path):
    """Factory: ``slow_bin(seconds)`` → path of a wrapper script that sleeps, then execs ckstore
    (a slow put, to observe that pushes run in the background)."""

    def make(seconds: float) -> str:
        script = tmp_path / f"slow-ckstore-{seconds}"
        script.write_text(f'#!/bin/sh\nsleep {seconds}\nexec "{ckstore_bin}" "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(script)

    return make


@pytest.fixture(scope="session")
def has_command(ckstore_bin: str):
    """``has_command("metric")`` → whether this ckstore build knows the subcommand."""
    cache: dict[str, bool] = {}

    def check(name: str) -> bool:
        if name not in cache:
            proc = subprocess.run([ckstore_bin, name, "--help"], capture_output=True)
            cache[name] = proc.returncode == 0
        return cache[name]

    return check
