"""`pip install ./Tools/python` (and `-e`) into a fresh virtual environment, then `import ckstore`
there. Offline and fast: the venv has no pip of its own (this interpreter's pip installs into it
with ``--python``) and sees the system's numpy and setuptools (--system-site-packages); the build
uses them (--no-build-isolation) and installs no dependencies (--no-deps). The source is copied
first so no build/ or *.egg-info appears in the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "Tools" / "python"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "env")
    python = root / "env" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import numpy, setuptools, importlib.util as u; "
                            "assert u.find_spec('setuptools.command.bdist_wheel') or u.find_spec('wheel'), "
                            "'setuptools without bdist_wheel (upgrade setuptools or install wheel)'"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the fresh venv lacks setuptools or numpy for an offline build: {probe.stderr.strip()}")
    return root, python


def install_and_import(root: Path, python: Path, editable: bool, binary: str) -> str:
    src = root / ("src-editable" if editable else "src")
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
           "--no-build-isolation", "--no-index"]
    cmd += ["-e", str(src)] if editable else [str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    code = ("import ckstore, numpy as np; "
            "p = ckstore.CheckpointPusher('venv', store='store', binary=%r); "
            "print(p.push(1, {'w': np.arange(3.0)}).result()); p.close(); "
            "print(ckstore.load('venv@1', store='store', binary=%r)['w'].tolist()); "
            "print(ckstore.__file__)") % (binary, binary)
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert run.returncode == 0, run.stderr
    digest, values, path = run.stdout.strip().splitlines()
    assert digest.startswith("sha256:") and values == "[0.0, 1.0, 2.0]"
    shutil.rmtree(root / "store")
    return path


def test_pip_install_into_a_fresh_venv(env, ckstore_bin):
    root, python = env
    path = install_and_import(root, python, editable=False, binary=ckstore_bin)
    assert path.startswith(str(root / "env")), path  # the installed copy, not the source tree
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "uninstall", "-q", "-y", "ckstore"],
                   check=True)


def test_pip_install_editable(env, ckstore_bin):
    root, python = env
    path = install_and_import(root, python, editable=True, binary=ckstore_bin)
    assert path == str(root / "src-editable" / "ckstore" / "__init__.py")


def test_import_needs_neither_torch_nor_the_binary():
    code = "import sys, ckstore; assert 'torch' not in sys.modules; print(len(ckstore.__all__))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PACKAGE), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_old_import_name_is_an_alias():
    code = ("import sys; sys.path.insert(0, %r); import ckstore_hook, ckstore; "
            "assert ckstore_hook.CheckpointPusher is ckstore.CheckpointPusher; "
            "assert ckstore_hook.safetensors_io is ckstore.safetensors_io; "
            "assert set(ckstore_hook.__all__) == set(ckstore.__all__)") % str(PACKAGE.parent)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
