"""Issue 9, command-line items: global options anywhere (20), put creating stores only where
asked (21), progress on a terminal (22), messages (23), run-name checks (24), `-o` through
symlinks and descriptors (8) and temporary files removed on SIGINT/SIGTERM (19).

Every test runs the real binary (see conftest.py) as a user would.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import select
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from cache_policy_support import cache_first_requests


# --------------------------------------------------------------------------------------------
# Helpers


def env_without_store(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CKSTORE_DIR"}
    env.update(extra)
    return env


def run(binary: str, *args: str, cwd=None, env=None, input: bytes | None = None, timeout: float = 60):
    proc = subprocess.run([binary, *args], cwd=cwd, env=env or env_without_store(), input=input, capture_output=True,
                          timeout=timeout)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def write_model(path: Path, floats: int = 1000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal(floats).astype(np.float32)}, str(path))
    return path.read_bytes()


def set_chunk_size(store: str, size: int) -> None:
    config = Path(store) / "config.json"
    text = config.read_text()
    assert '"chunk_size": 4194304' in text
    config.write_text(text.replace('"chunk_size": 4194304', f'"chunk_size": {size}'))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    write_model(path)
    return path


@pytest.fixture
def filled(ckstore_bin: str, store: str, model: Path) -> str:
    """The test's store, created, holding r@1 (the `model` file)."""
    assert run(ckstore_bin, "--store", store, "init").returncode == 0
    r = run(ckstore_bin, "--store", store, "put", "--run", "r", "--step", "1", str(model))
    assert r.returncode == 0, r.stderr
    return store


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ckstore: error: "), proc.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# Item 20: the command line


@pytest.mark.parametrize("placement", ["after-command", "after-command-equals", "at-the-end", "before-command"])
def test_store_option_works_before_or_after_the_command(ckstore_bin, tmp_path, model, placement):
    store = str(tmp_path / "s")
    assert run(ckstore_bin, "--store", store, "init").returncode == 0
    args = {
        "after-command": ["put", "--store", store, "--run", "r", "--step", "1", str(model)],
        "after-command-equals": ["put", f"--store={store}", "--run", "r", "--step", "1", str(model)],
        "at-the-end": ["put", "--run", "r", "--step", "1", str(model), "--store", store],
        "before-command": ["--store", store, "put", "--run", "r", "--step", "1", str(model)],
    }[placement]
    r = run(ckstore_bin, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / ".ckstore").exists()
    ls = run(ckstore_bin, "ls", "--json", "--store", store)
    assert ls.returncode == 0, ls.stderr
    assert json.loads(ls.stdout)["runs"][0]["name"] == "r"


def test_verbose_and_version_work_after_the_command(ckstore_bin, filled):
    r = run(ckstore_bin, "show", "r@9", "--store", filled, "--verbose")
    assert r.returncode == 1
    assert "notFound:" in r.stderr, "--verbose after the command prints the cause chain"
    v = run(ckstore_bin, "ls", "--version")
    assert v.returncode == 0 and v.stdout.decode().startswith("ckstore ")


def test_help_is_only_looked_for_before_double_dash(ckstore_bin, tmp_path, model, filled):
    # A file literally named "-h" after "--" is a file, not a request for help.
    (tmp_path / "-h").write_bytes(model.read_bytes())
    r = run(ckstore_bin, "--store", filled, "put", "--run", "dash", "--step", "1", "--", "-h", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("sha256:"), r.stdout
    show = run(ckstore_bin, "--store", filled, "show", "dash@1", "--json")
    assert show.returncode == 0, show.stderr
    # Before "--" it is still help.
    h = run(ckstore_bin, "put", "--run", "x", "-h")
    assert h.returncode == 0 and h.stdout.decode().startswith("usage: ckstore put")


@pytest.mark.parametrize("args, option", [
    (["put", "--run", "--step", "5", "FILE"], "--run"),
    (["put", "--run", "r", "--step", "--force", "FILE"], "--step"),
    (["get", "r@1", "-o", "--quiet"], "-o"),
    (["metric", "r@1", "loss=1", "--variant", "--json"], "--variant"),
])
def test_a_value_option_does_not_swallow_the_next_option(ckstore_bin, filled, model, args, option, tmp_path):
    args = [str(model) if a == "FILE" else a for a in args]
    before = run(ckstore_bin, "--store", filled, "ls", "--json").stdout
    # In an empty scratch directory: a binary that took "--quiet" as the output name would write there.
    scratch = tmp_path / "cwd"
    scratch.mkdir()
    r = run(ckstore_bin, "--store", filled, *args, cwd=scratch)
    assert r.returncode == 2, r.stderr
    assert f"{option} needs a value" in error_line(r)
    assert run(ckstore_bin, "--store", filled, "ls", "--json").stdout == before
    assert list(scratch.iterdir()) == []


def test_help_and_version_commands(ckstore_bin):
    main = run(ckstore_bin, "help")
    assert main.returncode == 0 and main.stdout.decode().startswith("usage: ckstore")
    assert main.stdout == run(ckstore_bin, "--help").stdout
    for command in ["put", "get", "gc", "ls"]:
        h = run(ckstore_bin, "help", command)
        assert h.returncode == 0, h.stderr
        assert h.stdout == run(ckstore_bin, command, "--help").stdout
        assert h.stdout.decode().startswith("usage: ckstore")
    bad = run(ckstore_bin, "help", "nope")
    assert bad.returncode == 2 and "unknown command 'nope'" in bad.stderr
    v = run(ckstore_bin, "version")
    assert v.returncode == 0 and v.stdout == run(ckstore_bin, "--version").stdout


def test_put_json(ckstore_bin, filled, model, tmp_path):
    r = run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "2", "--json", str(model))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    digest = json.loads(run(ckstore_bin, "--store", filled, "show", "r@1", "--json").stdout)["digest"]
    assert doc["digest"] == digest and doc["ref"] == "r@2" and doc["run"] == "r" and doc["step"] == 2
    assert doc["outcome"] == "created" and doc["previous"] is None
    assert doc["bytes_in"] == model.stat().st_size and doc["new_chunks"] == 0 and doc["dedup_hits"] == doc["chunks"] == 1
    other = tmp_path / "other.safetensors"
    write_model(other, seed=5)
    forced = json.loads(run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "2", "--force", "--json",
                            str(other)).stdout)
    assert forced["outcome"] == "replaced" and forced["previous"] == digest


def test_rm_json(ckstore_bin, filled, model):
    run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "2", str(model))
    dry = run(ckstore_bin, "--store", filled, "rm", "r@2", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dry_run"] is True and out["removed_snapshots"] == [{"run": "r", "step": 2}]
    assert out["removed_derived"] == [] and out["removed_files"] == 0 and out["freed_bytes"] == 0
    done = json.loads(run(ckstore_bin, "--store", filled, "rm", "r@1", "r@2", "--json").stdout)
    assert done["dry_run"] is False
    assert sorted(s["step"] for s in done["removed_snapshots"]) == [1, 2]
    assert done["removed_files"] == 1 and done["freed_bytes"] > 0


def test_ls_query_json_has_the_cached_key_that_show_has(ckstore_bin, filled, model):
    run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "2", str(model))
    cache_first_requests(filled)  # a test of the cache itself
    query = ["--run", "r", "--lawa", "k=2,stride=1", "--at", "2", "--json"]
    ls = json.loads(run(ckstore_bin, "--store", filled, "ls", *query).stdout)
    show = json.loads(run(ckstore_bin, "--store", filled, "show", *query).stdout)
    assert "cached" in ls and ls == show and ls["cached"] is None
    assert run(ckstore_bin, "--store", filled, "get", *query[:-1], "-o", os.devnull).returncode == 0
    ls = json.loads(run(ckstore_bin, "--store", filled, "ls", *query).stdout)
    assert ls["cached"] is not None and ls["cached"].startswith("sha256:")
    assert ls == json.loads(run(ckstore_bin, "--store", filled, "show", *query).stdout)


# --------------------------------------------------------------------------------------------
# Item 21: put creates a store only where asked


def test_put_at_the_default_location_does_not_create_a_store(ckstore_bin, tmp_path, model):
    r = run(ckstore_bin, "put", "--run", "r", "--step", "1", str(model), cwd=tmp_path)
    assert r.returncode == 1
    assert "ckstore init" in error_line(r) and ".ckstore" in r.stderr
    assert not (tmp_path / ".ckstore").exists()
    # After init, the default location works as before, silently.
    assert run(ckstore_bin, "init", cwd=tmp_path).returncode == 0
    ok = run(ckstore_bin, "put", "--run", "r", "--step", "1", str(model), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "created store" not in ok.stderr


@pytest.mark.parametrize("how", ["flag", "flag-after-command", "environment"])
def test_put_creates_an_explicit_store_and_says_so(ckstore_bin, tmp_path, model, how):
    store = tmp_path / "new" / "store"
    if how == "environment":
        r = run(ckstore_bin, "put", "--run", "r", "--step", "1", str(model), cwd=tmp_path,
                env=env_without_store(CKSTORE_DIR=str(store)))
    elif how == "flag":
        r = run(ckstore_bin, "--store", str(store), "put", "--run", "r", "--step", "1", str(model), cwd=tmp_path)
    else:
        r = run(ckstore_bin, "put", "--run", "r", "--step", "1", str(model), "--store", str(store), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"ckstore: created store at {store}" in r.stderr.splitlines()
    assert (store / "ckstore.db").exists() and not (tmp_path / ".ckstore").exists()
    again = run(ckstore_bin, "--store", str(store), "put", "--run", "r", "--step", "2", str(model))
    assert again.returncode == 0 and "created store" not in again.stderr


def test_store_path_with_unexpanded_tilde_means_home(ckstore_bin, tmp_path, model):
    home = tmp_path / "home"
    home.mkdir()
    r = run(ckstore_bin, "--store=~/ck", "put", "--run", "r", "--step", "1", str(model), cwd=tmp_path,
            env=env_without_store(HOME=str(home)))
    assert r.returncode == 0, r.stderr
    assert (home / "ck" / "ckstore.db").exists() and not (tmp_path / "~").exists()


# --------------------------------------------------------------------------------------------
# Item 22: progress on a terminal


def read_available(fd: int, until: float) -> bytes:
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


def slow_put(binary: str, store: str, data: bytes, stderr_tty: bool, quiet: bool = False, seconds: float = 2.0):
    """Puts `data` from a pipe fed in 20 pieces over `seconds`; returns (status, stderr bytes)."""
    master = slave = None
    if stderr_tty:
        master, slave = os.openpty()
    args = [binary, "--store", store, "put", "--run", "slow", "--step", "1", "-"] + (["--quiet"] if quiet else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=slave if stderr_tty else subprocess.PIPE, env=env_without_store())
    collected = bytearray()
    if stderr_tty:
        os.close(slave)
        reader = threading.Thread(target=lambda: collected.extend(read_available(master, time.monotonic() + 60)))
        reader.start()
    pieces = 20
    size = len(data) // pieces + 1
    for i in range(pieces):
        proc.stdin.write(data[i * size:(i + 1) * size])
        proc.stdin.flush()
        time.sleep(seconds / pieces)
    proc.stdin.close()
    if stderr_tty:
        proc.wait(timeout=60)
        reader.join(timeout=60)
        os.close(master)
        return proc.returncode, bytes(collected)
    err = proc.stderr.read()
    proc.wait(timeout=60)
    return proc.returncode, err


def test_slow_put_shows_progress_on_a_terminal(ckstore_bin, filled, tmp_path):
    data = write_model(tmp_path / "big.safetensors", floats=2_000_000, seed=3)  # 8 MB
    status, err = slow_put(ckstore_bin, filled, data, stderr_tty=True)
    assert status == 0, err
    text = err.decode("utf-8", "replace")
    assert "\r" in text and "MB/s" in text and " left" in text, repr(text)
    assert f"of {len(data) / 1e6:.1f} MB" in text, repr(text)
    assert "\x1b[K" in text  # redrawn in place, erased before the summary
    assert "slow@1: stored" in text.split("\r\x1b[K")[-1]


@pytest.mark.parametrize("quiet", [False, True])
def test_no_progress_without_a_terminal_or_with_quiet(ckstore_bin, filled, tmp_path, quiet):
    data = write_model(tmp_path / "big.safetensors", floats=2_000_000, seed=3)
    status, err = slow_put(ckstore_bin, filled, data, stderr_tty=quiet, quiet=quiet)
    assert status == 0, err
    text = err.decode("utf-8", "replace")
    assert "\r" not in text.replace("\r\n", "\n") and "MB/s," not in text and "\x1b" not in text, repr(text)


def test_slow_get_shows_progress_on_a_terminal(ckstore_bin, store, tmp_path):
    assert run(ckstore_bin, "--store", store, "init").returncode == 0
    set_chunk_size(store, 1 << 20)
    data = write_model(tmp_path / "big.safetensors", floats=2_000_000, seed=4)
    assert run(ckstore_bin, "--store", store, "put", "--run", "g", "--step", "1", str(tmp_path / "big.safetensors")).returncode == 0
    master, slave = os.openpty()
    proc = subprocess.Popen([ckstore_bin, "--store", store, "get", "g@1", "-o", "-"], stdout=subprocess.PIPE,
                            stderr=slave, env=env_without_store())
    os.close(slave)
    collected = bytearray()
    reader = threading.Thread(target=lambda: collected.extend(read_available(master, time.monotonic() + 60)))
    reader.start()
    got = b""
    while True:  # a slow consumer: 256 kB every 60 ms, about 2 s for 8 MB
        chunk = proc.stdout.read(256 * 1024)
        if not chunk:
            break
        got += chunk
        time.sleep(0.06)
    proc.wait(timeout=60)
    reader.join(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert got == data
    text = bytes(collected).decode("utf-8", "replace")
    assert "\rget: " in text and "MB/s" in text, repr(text)


# --------------------------------------------------------------------------------------------
# Item 23: messages


def foreign_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["pickle"] = tmp_path / "pytorch_model.bin"
    files["pickle"].write_bytes(pickle.dumps({"w": list(range(1000))}, protocol=2))
    files["zip"] = tmp_path / "model.pt"
    with zipfile.ZipFile(files["zip"], "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        z.writestr("archive/data/0", b"\0" * 4096)
    files["npy"] = tmp_path / "a.npy"
    np.save(files["npy"], np.zeros(100, np.float32))
    files["gguf"] = tmp_path / "m.gguf"
    files["gguf"].write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\0" * 100)
    return files


@pytest.mark.parametrize("kind, expected", [
    ("pickle", "not a safetensors file (looks like a PyTorch pickle/zip archive"),
    ("zip", "not a safetensors file (looks like a PyTorch pickle/zip archive"),
    ("npy", "not a safetensors file (looks like a NumPy .npy array"),
    ("gguf", "not a safetensors file (looks like a GGUF model file"),
])
@pytest.mark.parametrize("via_stdin", [False, True])
def test_other_formats_are_named(ckstore_bin, filled, tmp_path, kind, expected, via_stdin):
    path = foreign_files(tmp_path)[kind]
    before = run(ckstore_bin, "--store", filled, "stats", "--json").stdout
    if via_stdin:
        r = run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "5", "-", input=path.read_bytes())
    else:
        r = run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "5", str(path))
    assert r.returncode == 1
    line = error_line(r)
    assert expected in line, line
    assert "header length" not in line
    assert run(ckstore_bin, "--store", filled, "stats", "--json").stdout == before


@pytest.mark.parametrize("command", [["show"], ["get", "-o", "OUT"], ["rm"]])
def test_a_bare_run_name_suggests_latest(ckstore_bin, filled, tmp_path, command):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    r = run(ckstore_bin, "--store", filled, *args, "gpt2")
    assert r.returncode == 1
    assert "did you mean 'gpt2@latest'?" in error_line(r)
    assert not (tmp_path / "out").exists()


def test_metric_with_a_bare_run_name_asks_for_a_step(ckstore_bin, filled):
    r = run(ckstore_bin, "--store", filled, "metric", "r", "loss=1")
    assert r.returncode == 2
    assert "RUN@STEP (e.g. r@1000)" in error_line(r)


def test_a_hex_looking_run_name_suggests_latest(ckstore_bin, filled, model):
    assert run(ckstore_bin, "--store", filled, "put", "--run", "deadbeef", "--step", "1", str(model)).returncode == 0
    r = run(ckstore_bin, "--store", filled, "show", "deadbeef")
    assert r.returncode == 1 and "did you mean 'deadbeef@latest'?" in error_line(r)


@pytest.mark.parametrize("dtype, canonical", [("f32", "F32"), ("float32", "F32"), ("bf16", "BF16"), ("torch.float16", "F16"),
                                              ("int64", "I64")])
def test_lowercase_dtypes_suggest_the_canonical_name(ckstore_bin, filled, tmp_path, dtype, canonical):
    header = json.dumps({"w": {"dtype": dtype, "shape": [2], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    r = run(ckstore_bin, "--store", filled, "put", "--run", "r", "--step", "7", str(path))
    assert r.returncode == 1
    assert f'did you mean "{canonical}"?' in error_line(r)


@pytest.mark.parametrize("args", [
    ["put", "--run", "r", "--step", "3", "--metric", "loss=1", "--metric", "loss=2", "FILE"],
    ["metric", "r@1", "loss=1", "acc=0.5", "loss=2"],
])
def test_a_repeated_metric_is_a_usage_error(ckstore_bin, filled, model, args):
    args = [str(model) if a == "FILE" else a for a in args]
    before = run(ckstore_bin, "--store", filled, "ls", "--run", "r", "--json").stdout
    r = run(ckstore_bin, "--store", filled, *args)
    assert r.returncode == 2
    assert "metric 'loss' given more than once" in error_line(r)
    assert run(ckstore_bin, "--store", filled, "ls", "--run", "r", "--json").stdout == before


# --------------------------------------------------------------------------------------------
# Item 24: run names


HOSTILE_NAMES = [
    ("a\u200bb", "U+200B ZERO WIDTH SPACE", 2),
    ("a\u00a0b", "U+00A0 NO-BREAK SPACE", 2),
    ("ab\u200dc", "U+200D ZERO WIDTH JOINER", 3),
    ("\ufeffrun", "U+FEFF ZERO WIDTH NO-BREAK SPACE", 1),
    ("run\u2060", "U+2060 WORD JOINER", 4),
    ("r\u202egnp", "U+202E RIGHT-TO-LEFT OVERRIDE", 2),
    ("r\u2066x\u2069", "U+2066 LEFT-TO-RIGHT ISOLATE", 2),
    ("r\u200ex", "U+200E LEFT-TO-RIGHT MARK", 2),
    ("a\u2028b", "U+2028 LINE SEPARATOR", 2),
    ("a\u3000b", "U+3000 IDEOGRAPHIC SPACE", 2),
    ("a\u00adb", "U+00AD SOFT HYPHEN", 2),
    ("x\u3164", "U+3164 HANGUL FILLER", 2),
]


@pytest.mark.parametrize("name, code_point, position", HOSTILE_NAMES)
def test_invisible_characters_in_run_names_are_refused(ckstore_bin, filled, model, name, code_point, position):
    r = run(ckstore_bin, "--store", filled, "put", "--run", name, "--step", "1", str(model))
    assert r.returncode == 1
    assert f"contains {code_point} at position {position}" in error_line(r)
    assert [x["name"] for x in json.loads(run(ckstore_bin, "--store", filled, "ls", "--json").stdout)["runs"]] == ["r"]


def test_non_nfc_run_names_are_refused(ckstore_bin, filled, model):
    decomposed = "cafe\u0301"
    r = run(ckstore_bin, "--store", filled, "put", "--run", decomposed, "--step", "1", str(model))
    assert r.returncode == 1
    line = error_line(r)
    assert "not in Unicode normalization form C" in line and "U+0065 U+0301" in line and "U+00E9" in line
    ok = run(ckstore_bin, "--store", filled, "put", "--run", "caf\u00e9", "--step", "1", str(model))
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("name", ["café", "模型-7b", "run_α.β", "exp/1", "🚀launch"])
def test_visible_non_ascii_run_names_are_accepted(ckstore_bin, filled, model, name):
    r = run(ckstore_bin, "--store", filled, "put", "--run", name, "--step", "1", str(model))
    assert r.returncode == 0, r.stderr
    assert name in [x["name"] for x in json.loads(run(ckstore_bin, "--store", filled, "ls", "--json").stdout)["runs"]]


@pytest.mark.parametrize("args, what", [
    (["metric", "r@1", "lo\u200bss=1"], "metric name 'lo\\u{200B}ss' contains U+200B"),
    (["metric", "r@1", "loss=1", "--variant", "lawa\u00a0k6"], "variant name 'lawa\\u{00A0}k6' contains U+00A0"),
    (["put", "--run", "r", "--step", "4", "--metric", "val\u202eloss=1", "FILE"], "metric name 'val\\u{202E}loss' contains U+202E"),
    (["watch", "--run", "w\u200bx", "--lawa", "k=2,stride=1", "--exec", "true"], "run name 'w\\u{200B}x' contains U+200B"),
])
def test_metric_variant_and_watched_run_names_are_checked_too(ckstore_bin, filled, model, args, what):
    args = [str(model) if a == "FILE" else a for a in args]
    before = run(ckstore_bin, "--store", filled, "ls", "--run", "r", "--json").stdout
    r = run(ckstore_bin, "--store", filled, *args, timeout=20)
    assert r.returncode == 1
    assert what in error_line(r)
    assert run(ckstore_bin, "--store", filled, "ls", "--run", "r", "--json").stdout == before


# --------------------------------------------------------------------------------------------
# Item 8: -o through symlinks and descriptors


def test_get_to_a_symlink_replaces_its_target_and_keeps_the_link(ckstore_bin, filled, model, tmp_path):
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    target = target_dir / "model.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "link.safetensors"
    link.symlink_to(os.path.relpath(target, tmp_path))
    r = run(ckstore_bin, "--store", filled, "get", "r@1", "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert target.read_bytes() == model.read_bytes()
    assert sorted(os.listdir(tmp_path / "real")) == ["model.safetensors"], "no temporary file left"


def test_get_to_a_dangling_symlink_creates_its_target(ckstore_bin, filled, model, tmp_path):
    link = tmp_path / "link"
    link.symlink_to("chain")
    (tmp_path / "chain").symlink_to("sub/final.safetensors")  # a chain of two links
    (tmp_path / "sub").mkdir()
    r = run(ckstore_bin, "--store", filled, "get", "r@1", "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and (tmp_path / "chain").is_symlink()
    assert (tmp_path / "sub" / "final.safetensors").read_bytes() == model.read_bytes()


@pytest.mark.parametrize("path", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_get_to_dev_stdout_redirected_to_a_file_fills_the_file(ckstore_bin, filled, model, tmp_path, path):
    out = tmp_path / "out"
    with open(out, "wb") as f:
        r = subprocess.run([ckstore_bin, "--store", filled, "get", "r@1", "-o", path], stdout=f, stderr=subprocess.PIPE,
                           env=env_without_store(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == model.read_bytes()


def test_get_appends_to_dev_stdout_opened_for_append(ckstore_bin, filled, model, tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"head")
    with open(out, "ab") as f:
        r = subprocess.run([ckstore_bin, "--store", filled, "get", "r@1", "-o", "/dev/stdout"], stdout=f,
                           stderr=subprocess.PIPE, env=env_without_store(), timeout=60)
    assert r.returncode == 0
    assert out.read_bytes() == b"head" + model.read_bytes()


def test_get_through_a_symlink_to_a_device_or_fifo_writes_in_place(ckstore_bin, filled, model, tmp_path):
    null_link = tmp_path / "null"
    null_link.symlink_to("/dev/null")
    assert run(ckstore_bin, "--store", filled, "get", "r@1", "-o", str(null_link)).returncode == 0
    assert null_link.is_symlink() and os.readlink(null_link) == "/dev/null"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fifo_link = tmp_path / "fifo-link"
    fifo_link.symlink_to(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(open(fifo, "rb").read()))
    reader.start()
    r = run(ckstore_bin, "--store", filled, "get", "r@1", "-o", str(fifo_link))
    reader.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert bytes(got) == model.read_bytes()
    assert fifo_link.is_symlink()


def test_plot_to_a_symlink_keeps_the_link(ckstore_bin, filled, tmp_path):
    assert run(ckstore_bin, "--store", filled, "metric", "r@1", "loss=0.5").returncode == 0
    target = tmp_path / "plot-target.svg"
    link = tmp_path / "plot.svg"
    link.symlink_to(target.name)
    r = run(ckstore_bin, "--store", filled, "plot", "--run", "r", "--metric", "loss", "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == target.name
    assert "<svg" in target.read_text()


def test_a_long_output_name_fits_the_temporary_name(ckstore_bin, filled, model, tmp_path):
    out = tmp_path / ("m" * 240 + ".st")
    r = run(ckstore_bin, "--store", filled, "get", "r@1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == model.read_bytes()


# --------------------------------------------------------------------------------------------
# Item 19: an interrupted get leaves no temporary file


def stalled_get(binary: str, store: str, tmp_path: Path, **popen):
    """Starts `get b@1 -o OUT/F` of a 6-chunk snapshot whose last blob is a FIFO: get opens it
    and blocks there, its temporary output file already holding the first chunks (a get stalled
    on slow storage). Returns (process, out folder, restore) once the temporary file exists;
    `restore()` puts the blob back."""
    assert run(binary, "--store", store, "init").returncode == 0
    set_chunk_size(store, 1 << 20)
    write_model(tmp_path / "big.safetensors", floats=1_500_000, seed=6)
    assert run(binary, "--store", store, "put", "--run", "b", "--step", "1", str(tmp_path / "big.safetensors")).returncode == 0
    blobs = sorted(glob.glob(f"{store}/objects/*/*"), key=os.path.getmtime)
    victim = blobs[-1]
    saved = Path(victim).read_bytes()
    os.unlink(victim)
    os.mkfifo(victim)

    def restore():
        os.unlink(victim)
        Path(victim).write_bytes(saved)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([binary, "--store", store, "get", "b@1", "-o", str(out_dir / "F")], stderr=subprocess.PIPE,
                            env=env_without_store(), **popen)
    deadline = time.monotonic() + 30
    while not glob.glob(str(out_dir / ".F.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if not glob.glob(str(out_dir / ".F.tmp-*")):
        proc.kill()
        proc.wait()
        restore()
        pytest.fail(f"no temporary file appeared (exit {proc.returncode})")
    time.sleep(0.2)
    return proc, out_dir, restore


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupted_get_removes_its_temporary_file(ckstore_bin, store, tmp_path, sig):
    proc, out_dir, restore = stalled_get(ckstore_bin, store, tmp_path)
    try:
        proc.send_signal(sig)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        restore()
    assert status == -sig, f"exit status {status} should report signal {sig}"
    assert os.listdir(out_dir) == [], "the temporary file was removed"
    # Nothing else broke: the get works once the blob is back.
    assert run(ckstore_bin, "--store", store, "get", "b@1", "-o", str(out_dir / "F")).returncode == 0
    assert (out_dir / "F").read_bytes() == (tmp_path / "big.safetensors").read_bytes()


def test_a_signal_the_parent_ignores_stays_ignored(ckstore_bin, store, tmp_path):
    # nohup, or a background job's SIGINT: ckstore must not start acting on it.
    proc, out_dir, restore = stalled_get(ckstore_bin, store, tmp_path,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None, "an ignored SIGINT ended the process"
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        restore()
    assert status == -signal.SIGTERM
    assert os.listdir(out_dir) == []
