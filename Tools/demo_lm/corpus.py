"""The language-model demo's text: the CPython standard library's docstrings, as bytes.

    python3 Tools/demo_lm/corpus.py OUT_DIR [--max-bytes N]

Every module of the running interpreter's standard library (``sysconfig``'s ``stdlib``
folder, ``**/*.py`` sorted by path, without ``site-packages`` and the test suites) is parsed
with :mod:`ast` and its docstrings (module, classes, functions) are collected: English prose
present on every machine with Python. Every 10th module (by sorted path) goes to the validation split, the others to the
training split, so no document is in both. Writes ``OUT_DIR/train.bin`` and ``OUT_DIR/val.bin``
(UTF-8 bytes; the model's vocabulary is the 256 byte values) and ``OUT_DIR/corpus.json``
(where the text came from, file counts, byte sizes). The same interpreter gives the same bytes.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import sysconfig
from pathlib import Path

VAL_EVERY = 10  # every 10th module (sorted by path) is held out for validation
SKIP = {"site-packages", "test", "tests", "idle_test", "__pycache__"}  # folders left out


def module_docstrings(path: Path) -> str:
    """The docstrings of one module (module, classes, functions), blank-line separated."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
    return "\n\n".join(docs)


def build(max_bytes: int | None = None) -> tuple[bytes, bytes, dict]:
    """(train bytes, validation bytes, description) from this interpreter's standard library.

    ``max_bytes`` caps the training split (the validation split is capped at a tenth of it)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py")
                   if not SKIP.intersection(p.relative_to(stdlib).parts[:-1]))
    train, val = [], []
    for i, path in enumerate(files):
        text = module_docstrings(path)
        if text:
            (val if i % VAL_EVERY == 0 else train).append(text)
    train_b = "\n\n".join(train).encode("utf-8")
    val_b = "\n\n".join(val).encode("utf-8")
    if max_bytes is not None:
        train_b, val_b = train_b[:max_bytes], val_b[: max(max_bytes // 10, 4096)]
    info = {
        "source": f"docstrings of {stdlib}/**/*.py (Python {sys.version.split()[0]})",
        "modules": len(files),
        "train_modules": len(train),
        "val_modules": len(val),
        "source_bytes": sum(p.stat().st_size for p in files),
        "train_bytes": len(train_b),
        "val_bytes": len(val_b),
    }
    return train_b, val_b, info


def main(argv: list[str] | None = None) -> int:
    """Write train.bin, val.bin and corpus.json into OUT_DIR; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--max-bytes", type=int, default=None, help="cap the training split (for tests)")
    args = ap.parse_args(argv)
    train_b, val_b, info = build(args.max_bytes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.bin").write_bytes(train_b)
    (out / "val.bin").write_bytes(val_b)
    (out / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"corpus: {info['source']}: {info['source_bytes'] / 1e6:.1f} MB of source in {info['modules']} modules; "
          f"docstrings {info['train_bytes'] / 1e6:.2f} MB train ({info['train_modules']} modules), "
          f"{info['val_bytes'] / 1e6:.2f} MB validation ({info['val_modules']} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
