"""Hardening of `ckstore watch` (issue 9, items 4 and 17): hostile run names never reach the
shell as code and every placeholder gets its exact value (also in the environment); failed
steps are retried with backoff and make the exit status non-zero when they never succeed;
long run names do not exceed NAME_MAX in temporary file names; a missing store or run is
reported instead of polled in silence.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

K, NU = 2, 10
LAWA = f"k={K},stride={NU}"
VARIANT = f"lawa-k{K}-s{NU}"

# Run names that break naive substitution: placeholders inside the name, shell
# metacharacters, quotes of both kinds, backslashes, backticks and command substitutions.
# (Run-name validation forbids '@', ',', spaces, control characters and a leading '-'.)
HOSTILE_RUNS = [
    "x{run}$(touch${IFS}marker)",
    "x{path}$(touch${IFS}marker)",
    "exp{step}",
    "exp{variant}",
    "it's{run}",
    'dq"{run}"$(touch${IFS}marker)',
    "back\\slash\\{run}\\",
    "tick`touch${IFS}marker`",
    "semi;touch${IFS}marker;{step}",
    "dollar$HOME${PATH}",
    "amp&&touch${IFS}marker|cat>marker2",
    "glob*?[a]",
    "'$(touch${IFS}marker)'",
]

# The same four values, written in each quoting context a user may put a placeholder in.
TEMPLATES = {
    "plain": "{path} {run} {step} {variant}",
    "double": '"{path}" "{run}" "{step}" "{variant}"',
    "single": "'{path}' '{run}' '{step}' '{variant}'",
}


def safetensors(values: list[float], name: str = "w") -> bytes:
    """A minimal safetensors file with one F32 tensor."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps({name: {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + data


def put(ckstore, tmp_path: Path, run: str, step: int) -> None:
    f = tmp_path / f"in-{step}.safetensors"
    f.write_bytes(safetensors([float(step + i) for i in range(4)]))
    ckstore("put", str(f), "--run", run, "--step", str(step))


def dump_script(tmp_path: Path) -> Path:
    """A CMD helper that appends its arguments and the CKSTORE_* environment as one JSON line."""
    script = tmp_path / "dump.py"
    script.write_text(
        "import json, os, sys\n"
        "names = ('CKSTORE_PATH', 'CKSTORE_STEP', 'CKSTORE_RUN', 'CKSTORE_VARIANT')\n"
        "env = {k: os.environ[k] for k in names if k in os.environ}\n"
        "exists = os.path.exists(os.environ.get('CKSTORE_PATH', ''))\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[2:], 'env': env, 'exists': exists}) + '\\n')\n")
    return script


def watch_cmd(binary: str, store: str, run: str, exec: str, *options: str) -> list[str]:
    return [binary, "--store", store, "watch", "--run", run, "--lawa", LAWA, "--poll", "0.05", "--exec", exec, *options]


def run_watch(binary, store, run, exec, tmp_path: Path, *options, timeout=60, cwd=None):
    tmpdir = tmp_path / "watch-tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.run(watch_cmd(binary, store, run, exec, *options), capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)
    assert not list(tmpdir.iterdir()), f"watch left {list(tmpdir.iterdir())} in its TMPDIR"
    return proc


def markers(root: Path) -> list[Path]:
    return [p for p in root.rglob("marker*")]


# --------------------------------------------------------------------------------------------
# item 4: placeholders


@pytest.mark.parametrize("context", sorted(TEMPLATES))
def test_hostile_run_names_get_exact_values_and_run_no_code(ckstore_bin, store, ckstore, tmp_path, context):
    ckstore("init")
    for run in HOSTILE_RUNS:
        for step in (0, 10):
            put(ckstore, tmp_path, run, step)
    script = dump_script(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    for run in HOSTILE_RUNS:
        log = tmp_path / f"log-{context}-{HOSTILE_RUNS.index(run)}.jsonl"
        exec = f"{sys.executable} '{script}' '{log}' {TEMPLATES[context]}"
        proc = run_watch(ckstore_bin, store, run, exec, tmp_path, "--raw", "--until", "10", cwd=work)
        assert not markers(tmp_path), f"run name {run!r} ({context} template) ran shell code: {markers(tmp_path)}"
        assert proc.returncode == 0, (run, proc.stderr)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        got = sorted((r["argv"][2], r["argv"][3]) for r in rows)
        assert got == sorted([("0", "raw"), ("10", "raw"), ("10", VARIANT)]), (run, rows, proc.stderr)
        for r in rows:
            path, name, step, variant = r["argv"]
            assert name == run, (context, run, r)
            assert r["env"] == {"CKSTORE_PATH": path, "CKSTORE_RUN": run, "CKSTORE_STEP": step,
                                "CKSTORE_VARIANT": variant}, (run, r)
            assert r["exists"], f"{path} did not exist while CMD ran"
            assert os.path.basename(path).endswith(f"-{step}-{variant}.safetensors")
        assert not markers(tmp_path), f"run name {run!r} ({context} template) ran shell code: {markers(tmp_path)}"


def test_environment_only_command_and_literal_braces(ckstore_bin, store, ckstore, tmp_path):
    """CMD may use the variables directly; `\\{run}` and unknown `{words}` stay literal."""
    ckstore("init")
    run = "x{run}$(touch${IFS}marker)"
    put(ckstore, tmp_path, run, 0)
    put(ckstore, tmp_path, run, 10)
    out = tmp_path / "out.txt"
    exec = f'printf "%s|%s|%s|%s|%s\\n" "$CKSTORE_RUN" "$CKSTORE_STEP" "$CKSTORE_VARIANT" \\{{run}} {{other}} >> \'{out}\''
    proc = run_watch(ckstore_bin, store, run, exec, tmp_path, "--until", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == f"{run}|10|{VARIANT}|{{run}}|{{other}}\n"
    assert not markers(tmp_path)


def test_watch_help_documents_environment(ckstore_bin):
    text = subprocess.run([ckstore_bin, "watch", "--help"], capture_output=True, text=True).stdout
    for name in ("CKSTORE_PATH", "CKSTORE_STEP", "CKSTORE_RUN", "CKSTORE_VARIANT"):
        assert name in text


def test_demo_script_does_not_paste_values_into_the_shell():
    demo = (Path(__file__).resolve().parents[2] / "Tools" / "demo.sh").read_text()
    line = next(line for line in demo.splitlines() if line.startswith("EVAL="))
    assert "{path}" not in line and "{run}" not in line
    assert '"$CKSTORE_PATH"' in line and '"$CKSTORE_RUN"' in line


# --------------------------------------------------------------------------------------------
# item 17: long names, retries, missing store or run


@pytest.mark.parametrize("run", ["L" * 200, "é" * 200, "ü{run}" * 33], ids=["ascii200", "utf8-400-bytes", "mixed"])
def test_long_run_name_is_processed(ckstore_bin, store, ckstore, tmp_path, run):
    ckstore("init")
    put(ckstore, tmp_path, run, 0)
    put(ckstore, tmp_path, run, 10)
    script = dump_script(tmp_path)
    log = tmp_path / "log.jsonl"
    proc = run_watch(ckstore_bin, store, run, f"{sys.executable} '{script}' '{log}' {{path}} {{run}} {{step}} {{variant}}",
                     tmp_path, "--raw", "--until", "10")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((r["argv"][2], r["argv"][3]) for r in rows) == sorted([("0", "raw"), ("10", "raw"), ("10", VARIANT)])
    for r in rows:
        assert r["argv"][1] == run and r["exists"]
        assert len(os.path.basename(r["argv"][0]).encode()) <= 200


def test_get_to_a_long_file_name(ckstore, store, tmp_path):
    """The temporary name beside a 250-byte output name must not exceed NAME_MAX either."""
    ckstore("init")
    put(ckstore, tmp_path, "r", 0)
    for name in ("a" * 250, "é" * 127):
        out = tmp_path / name
        proc = ckstore("get", "r@0", "-o", str(out), check=False)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == safetensors([0.0, 1.0, 2.0, 3.0])
        assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def start_watch(binary, store, tmp_path: Path, *options, exec="true"):
    tmpdir = tmp_path / "watch-tmp"
    tmpdir.mkdir(exist_ok=True)
    err = tmp_path / "watch.err"
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    with open(err, "w") as f:
        proc = subprocess.Popen(watch_cmd(binary, store, "r", exec, *options), stdout=subprocess.DEVNULL, stderr=f, env=env)
    return proc, tmpdir, err


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_transient_failure_is_retried(ckstore_bin, store, ckstore, tmp_path):
    """The watch's temporary folder disappears (like a full TMPDIR): the step fails, is retried
    with backoff, and succeeds once the folder is back; nothing is skipped."""
    ckstore("init")
    put(ckstore, tmp_path, "r", 0)
    log = tmp_path / "cmd.log"
    proc, tmpdir, err = start_watch(ckstore_bin, store, tmp_path, "--until", "10", "--retries", "6",
                                    exec=f"echo $CKSTORE_STEP $CKSTORE_VARIANT >> '{log}'")
    try:
        wait_for(lambda: any(tmpdir.iterdir()), what="the watch's temporary folder")
        (folder,) = list(tmpdir.iterdir())
        folder.rmdir()
        put(ckstore, tmp_path, "r", 10)
        wait_for(lambda: "retrying" in err.read_text(), what="a retry warning")
        folder.mkdir()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.read_text()
    assert proc.returncode == 0, stderr
    assert log.read_text() == f"10 {VARIANT}\n", stderr
    assert "r@10" in stderr and "retrying in" in stderr
    assert "error" not in stderr
    assert not list(tmpdir.iterdir())


@pytest.mark.parametrize("fail_fast", [False, True])
def test_step_that_never_succeeds_makes_exit_status_nonzero(ckstore_bin, store, ckstore, tmp_path, fail_fast):
    ckstore("init")
    put(ckstore, tmp_path, "r", 0)
    log = tmp_path / "cmd.log"
    options = ["--until", "10", "--retries", "2"] + (["--fail-fast"] if fail_fast else [])
    proc, tmpdir, err = start_watch(ckstore_bin, store, tmp_path, *options, exec=f"echo $CKSTORE_STEP >> '{log}'")
    try:
        wait_for(lambda: any(tmpdir.iterdir()), what="the watch's temporary folder")
        (folder,) = list(tmpdir.iterdir())
        folder.rmdir()
        put(ckstore, tmp_path, "r", 10)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.read_text()
    assert proc.returncode == 1, stderr
    assert not log.exists()
    assert stderr.count("retrying in") == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("ckstore: error:")]
    assert errors and "r@10" in errors[0] and "giving up after 3 attempts" in errors[0], stderr
    if not fail_fast:
        assert "never succeeded" in errors[-1] and "r@10" in errors[-1], stderr


def test_missing_run_is_reported(ckstore_bin, store, ckstore, tmp_path):
    ckstore("init")
    put(ckstore, tmp_path, "real", 0)
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    cmd = [ckstore_bin, "--store", store, "watch", "--run", "typo", "--lawa", LAWA, "--exec", "true",
           "--poll", "0.05", "--idle-exit", "0.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env={**os.environ, "TMPDIR": str(tmpdir)})
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr  # said once, not at every poll
    assert "'typo' does not exist" in warnings[0] and "real" in warnings[0], proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ckstore: error:")


def test_missing_store_is_reported(ckstore_bin, tmp_path):
    missing = tmp_path / "no-such-store"
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    cmd = [ckstore_bin, "--store", str(missing), "watch", "--run", "r", "--lawa", LAWA, "--exec", "true",
           "--poll", "0.05", "--idle-exit", "0.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env={**os.environ, "TMPDIR": str(tmpdir)})
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(missing) in warnings[0], proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert not missing.exists()  # watching does not create a store


def test_run_that_appears_later_clears_the_warning(ckstore_bin, store, ckstore, tmp_path):
    ckstore("init")
    log = tmp_path / "cmd.log"
    proc, tmpdir, err = start_watch(ckstore_bin, store, tmp_path, "--until", "10", exec=f"echo $CKSTORE_STEP >> '{log}'")
    try:
        wait_for(lambda: "does not exist" in err.read_text(), what="the missing-run warning")
        put(ckstore, tmp_path, "r", 0)
        put(ckstore, tmp_path, "r", 10)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.read_text()
    assert log.read_text() == "10\n"


def test_pending_retry_is_dropped_when_its_window_breaks(ckstore_bin, store, ckstore, tmp_path):
    """A step waiting for a retry whose input is removed is dropped, so --idle-exit can end the
    watch instead of waiting for a retry that can never run."""
    ckstore("init")
    put(ckstore, tmp_path, "r", 0)
    proc, tmpdir, err = start_watch(ckstore_bin, store, tmp_path, "--retries", "50", "--idle-exit", "0.5")
    try:
        wait_for(lambda: any(tmpdir.iterdir()), what="the watch's temporary folder")
        (folder,) = list(tmpdir.iterdir())
        folder.rmdir()
        put(ckstore, tmp_path, "r", 10)
        wait_for(lambda: "retrying" in err.read_text(), what="a retry warning")
        ckstore("rm", "r@0")
        proc.wait(timeout=30)
        folder.mkdir()
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.read_text()
    assert "no longer all stored" in stderr, stderr
    assert proc.returncode == 0, stderr
