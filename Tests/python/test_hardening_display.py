"""Hardening of human output (issue 9, item 6): names from the store or the command line
(tensor names, metadata keys and values, run, metric and variant names) never reach the
terminal with raw control characters (C0, DEL, C1) or bidirectional controls; they are shown
escaped (`\\u001b`, `\\n`). `--json` keeps the exact values (escaped as JSON).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

ESC_TITLE = "\x1b]0;title\x07"
CLEAR = "\x1b[2J"
C1_CSI = "\u009b31m"
BIDI = "\u202egnp.exe"
NEWLINE = "two\nlines"

TENSORS = [f"t{ESC_TITLE}", f"c{CLEAR}", f"k{C1_CSI}", f"b{BIDI}", f"n{NEWLINE}", "plain"]
METADATA = {f"key{CLEAR}": f"v{ESC_TITLE}\nFAKE metadata line", "ok": f"x\u2066y\u0000z\x7f"}

# A byte sequence is unsafe when it is a C0 control other than the line ends we write, DEL,
# a C1 control (UTF-8 C2 80..C2 9F) or a bidi control / line separator (UTF-8 of U+061C,
# U+200E, U+200F, U+202A..U+202E, U+2066..U+2069, U+2028, U+2029).
UNSAFE = re.compile(
    rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def assert_safe(data: bytes, what: str) -> None:
    m = UNSAFE.search(data)
    assert m is None, f"{what} has a raw control character {m.group()!r} at byte {m.start()}: {data[:400]!r}"


def safetensors(names: list[str], metadata: dict[str, str] | None = None) -> bytes:
    header: dict = {}
    data = b""
    for i, name in enumerate(names):
        chunk = struct.pack("<2f", float(i), float(i) + 0.5)
        header[name] = {"dtype": "F32", "shape": [2], "data_offsets": [len(data), len(data) + len(chunk)]}
        data += chunk
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def raw(ckstore_bin: str, store: str, *args: str):
    import subprocess
    return subprocess.run([ckstore_bin, "--store", store, *args], capture_output=True)


def populate(ckstore, tmp_path: Path, run: str = "r") -> None:
    """Two snapshots of `run`. Run names with control or bidi characters are refused at put
    (item 24), but a store made by an earlier release, or a crafted database, can hold them:
    such names are written into the database directly, as that store would hold them."""
    ckstore("init")
    for step in (0, 10):
        f = tmp_path / f"s{step}.safetensors"
        f.write_bytes(safetensors(TENSORS, METADATA))
        ckstore("put", str(f), "--run", "r", "--step", str(step))
    if run != "r":
        with db(tmp_path) as conn:
            conn.execute("UPDATE runs SET name = ? WHERE name = 'r'", (run,))


def db(tmp_path: Path):
    """A connection to the test store's database (the `store` fixture is tmp_path/store)."""
    import sqlite3
    return sqlite3.connect(str(tmp_path / "store" / "ckstore.db"))


def add_metric(tmp_path: Path, run: str, step: int, name: str, value: float, variant: str = "raw") -> None:
    """Records a metric directly in the database (names the CLI refuses, as an older store holds them)."""
    with db(tmp_path) as conn:
        conn.execute(
            "INSERT INTO metrics (run_id, step, variant, name, value, recorded_at) "
            "SELECT id, ?, ?, ?, ?, 0 FROM runs WHERE name = ?", (step, variant, name, value, run))


def test_show_escapes_tensor_names_and_metadata(ckstore_bin, store, ckstore, tmp_path):
    populate(ckstore, tmp_path)
    proc = raw(ckstore_bin, store, "show", "r@10")
    assert proc.returncode == 0, proc.stderr
    assert_safe(proc.stdout, "show")
    text = proc.stdout.decode()
    assert "t\\u001b]0;title\\u0007" in text and "c\\u001b[2J" in text and "k\\u009b31m" in text
    assert "b\\u202egnp.exe" in text and "ntwo\\nlines" in text
    assert "\\nFAKE metadata line" in text and "x\\u2066y\\u0000z\\u007f" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())
    # --json keeps the exact values
    doc = json.loads(raw(ckstore_bin, store, "show", "r@10", "--json").stdout)
    assert [t["name"] for t in doc["tensors"]] == TENSORS
    assert doc["metadata"] == METADATA


def test_show_query_and_ls_query_escape(ckstore_bin, store, ckstore, tmp_path):
    populate(ckstore, tmp_path, run=f"r{BIDI}")
    for args in (["show", "--lawa", "k=2,stride=10", "--at", "10"], ["ls", "--lawa", "k=2,stride=10", "--at", "10"]):
        proc = raw(ckstore_bin, store, *args)
        assert proc.returncode == 0, proc.stderr
        assert_safe(proc.stdout, " ".join(args))
        assert b"r\\u202egnp.exe@10" in proc.stdout


def test_ls_escapes_run_metric_and_variant_names(ckstore_bin, store, ckstore, tmp_path):
    run = f"r{BIDI}\u2069"
    populate(ckstore, tmp_path, run=run)
    add_metric(tmp_path, run, 10, f"loss{CLEAR}", 1.5, variant=f"v{ESC_TITLE}")
    add_metric(tmp_path, run, 5, f"m{C1_CSI}", 2.0)  # a step without a snapshot
    for args in (["ls"], ["ls", "--run", run], ["ls", "--derived"]):
        proc = raw(ckstore_bin, store, *args)
        assert proc.returncode == 0, proc.stderr
        assert_safe(proc.stdout, " ".join(args))
        assert_safe(proc.stderr.encode() if isinstance(proc.stderr, str) else proc.stderr, " ".join(args))
    listing = raw(ckstore_bin, store, "ls", "--run", run).stdout.decode()
    assert "v\\u001b]0;title\\u0007:loss\\u001b[2J=1.5" in listing
    assert "m\\u009b31m=2" in listing
    assert "r\\u202egnp.exe\\u2069" in raw(ckstore_bin, store, "ls").stdout.decode()
    # the table stays aligned: every row has the same column start for DIGEST
    rows = raw(ckstore_bin, store, "ls", "--run", run).stdout.decode().splitlines()
    assert len({row.index("sha256:") if "sha256:" in row else rows[0].index("DIGEST") for row in rows[:3]}) == 1
    doc = json.loads(raw(ckstore_bin, store, "ls", "--run", run, "--json").stdout)
    assert doc["run"] == run
    assert {(m["variant"], m["name"]) for m in doc["metrics"]} == {(f"v{ESC_TITLE}", f"loss{CLEAR}"), ("raw", f"m{C1_CSI}")}


def test_error_lines_escape_names(ckstore_bin, store, ckstore, tmp_path):
    populate(ckstore, tmp_path)
    cases = [
        ["ls", "--run", f"x{CLEAR}"],  # unknown run
        ["show", f"r{ESC_TITLE}@0"],  # bad ref
        ["show", f"nope{BIDI}@0"],
        [f"cmd{CLEAR}"],  # unknown command
        ["show", "r@0", f"--opt{ESC_TITLE}"],  # unknown option
        ["metric", "r@0", f"a{CLEAR}=x"],  # bad value
        ["get", "r@0", "-o", str(tmp_path / f"no-dir{CLEAR}" / "f")],  # cannot write
    ]
    for args in cases:
        proc = raw(ckstore_bin, store, *args)
        assert proc.returncode in (1, 2), (args, proc.stderr)
        assert_safe(proc.stderr, f"stderr of {args!r}")
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckstore: error:"), (args, proc.stderr)
        # Shown escaped: the terminal style (\u001b) or, for names the name rules refuse
        # (item 24), the message style that names the code point (\u{001B}).
        assert any(e in lines[0] for e in ("\\u001b", "\\u202e", "\\u{001B}", "\\u{202E}")), (args, lines[0])


def test_help_keeps_its_line_breaks(ckstore_bin, store):
    proc = raw(ckstore_bin, store, "watch", "--help")
    assert proc.returncode == 0
    assert proc.stdout.count(b"\n") > 10 and b"\\n" not in proc.stdout
