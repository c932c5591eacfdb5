"""The README's Python examples run as written: every ```python block of its "## Python" section
runs in a fresh interpreter, with CKSTORE_DIR a fresh store, CKSTORE_BIN the binary under test and
the package importable (Tools/python on PYTHONPATH, as after `pip install ./Tools/python`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_examples():
    blocks = python_blocks()
    assert len(blocks) >= 2 and any("import torch" in b for b in blocks)
    assert all("ckstore_hook" not in b and "sys.path" not in b for b in blocks)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index, ckstore_bin, tmp_path):
    code = python_blocks()[index]
    if "import torch" in code:
        pytest.importorskip("torch")
    env = {**os.environ, "CKSTORE_DIR": str(tmp_path / "store"), "CKSTORE_BIN": ckstore_bin,
           "PYTHONPATH": str(ROOT / "Tools" / "python")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "numpy-run" in code:
        assert "[200. 200. 200. 200.]" in proc.stdout
    if "pusher.stats" in code:
        assert "push: 3 pushes" in proc.stdout
