"""`ckstore sweep` and `ckstore plot --heatmap` (issue 13, section 3).

A sweep computes every LAWA (k, ν) pair at some steps in one pass per step. These tests check
that every result is byte-identical to the same recipe computed alone by `get --lawa --no-cache`
(F32, BF16 and F16 tensors over several chunks, NaN/Inf included, and an integer tensor copied),
that the single query is then a cache hit, `--dry-run`, pairs lacking inputs (below step 0, off
the run's grid, not stored), failing commands, hostile run names in the CMD environment, the
heatmap SVG (values, missing cells, escaping), and bad arguments (one line, exit 2, store
unchanged).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from cache_policy_support import cache_first_requests

RUN = "sweep-run"
STEPS = list(range(0, 3001, 250))  # 13 snapshots every 250 steps
KS = [2, 4, 6]
STRIDES = [250, 500]


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header = {}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, (_, _, data) in tensors.items():
            f.write(data)


def snapshot_bytes(step: int) -> dict[str, tuple[str, list[int], bytes]]:
    """F32 (3 chunks of 4 KiB and a bit), BF16 and F16 tensors with special values, and an I64."""
    rng = np.random.default_rng(step)
    f32 = (rng.normal(0, 1, 3100) * (1 + step / 100)).astype(np.float32)
    # random bit patterns: every exponent, so that the order of the additions shows
    f32[1500:] = rng.integers(0, 2**32, 1600, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f32[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.4e-45]
    f32[6] = 1.0 + step * 2.0**-23
    bf16 = (rng.normal(0, 3, 2200).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    f16 = rng.normal(0, 100, 1500).astype(np.float16)
    f16[:2] = [65504.0, 6e-8]
    counter = np.array([step, -step, 7], dtype=np.int64)
    return {
        "a.weight": ("F32", [31, 100], f32.tobytes()),
        "b.bf16": ("BF16", [2200], bf16.tobytes()),
        "c.half": ("F16", [1500], f16.tobytes()),
        "n.count": ("I64", [3], counter.tobytes()),
    }


def init_store(store: str, ckstore) -> None:
    ckstore("init")
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["chunk_size"] = 4096
    path.write_text(json.dumps(config, indent=2) + "\n")


def put_steps(ckstore, tmp_path: Path, run: str, steps) -> None:
    for step in steps:
        f = tmp_path / f"in-{step}.safetensors"
        write_safetensors(f, snapshot_bytes(step))
        ckstore("put", str(f), "--run", run, "--step", str(step))


@pytest.fixture
def run_store(store, ckstore, tmp_path):
    init_store(store, ckstore)
    put_steps(ckstore, tmp_path, RUN, STEPS)
    return store


def sweep_env(tmp_path: Path) -> dict:
    tmpdir = tmp_path / "sweep-tmp"
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir)}


def run_sweep(ckstore_bin, store, tmp_path, *args, timeout=300):
    env = sweep_env(tmp_path)
    proc = subprocess.run([ckstore_bin, "--store", store, "sweep", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    left = list(Path(env["TMPDIR"]).iterdir())
    assert not left, f"sweep left {left} in its TMPDIR"
    return proc


def derived_count(ckstore) -> int:
    return len(json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"])


# --------------------------------------------------------------------------------------------
# results


def test_sweep_outputs_are_bit_identical_to_single_queries_and_cached(run_store, ckstore_bin, ckstore, tmp_path):
    cache_first_requests(run_store)  # a test of the cache itself
    out = tmp_path / "out"
    out.mkdir()
    exec = f"cp {{path}} '{out}'/{{variant}}-{{step}}.safetensors"
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=" + ",".join(map(str, KS)),
                     "--stride", ",".join(map(str, STRIDES)), "--at", "2500,3000", "--exec", exec)
    assert proc.returncode == 0, proc.stderr
    assert derived_count(ckstore) == 2 * len(KS) * len(STRIDES)
    for at in (2500, 3000):
        for k in KS:
            for nu in STRIDES:
                swept = (out / f"lawa-k{k}-s{nu}-{at}.safetensors").read_bytes()
                ref = tmp_path / "ref.safetensors"
                ckstore("get", "--run", RUN, "--lawa", f"k={k},stride={nu}", "--at", str(at), "--no-cache", "-o", str(ref))
                assert swept == ref.read_bytes(), f"k={k} stride={nu} at={at}: sweep differs from get --lawa"
                again = ckstore("get", "--run", RUN, "--lawa", f"k={k},stride={nu}", "--at", str(at), "-o", str(ref))
                assert "from the cache" in again.stderr, again.stderr
                assert ref.read_bytes() == swept
    # the integer tensor is the newest input's, in every output
    blob = (out / "lawa-k6-s500-3000.safetensors").read_bytes()
    assert np.array([3000, -3000, 7], dtype=np.int64).tobytes() in blob


def test_sweep_serves_cached_pairs_and_computes_the_rest(run_store, ckstore_bin, ckstore, tmp_path):
    cache_first_requests(run_store)  # a test of the cache itself
    ckstore("get", "--run", RUN, "--lawa", "k=4,stride=500", "--at", "3000", "-o", str(tmp_path / "x.st"))
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,4", "--stride", "500",
                     "--at", "3000", "--exec", "true")
    assert proc.returncode == 0, proc.stderr
    assert "lawa run=sweep-run k=4 stride=500 at=3000: from the cache" in proc.stderr
    assert "lawa run=sweep-run k=2 stride=500 at=3000: computed from 2 inputs" in proc.stderr


def test_sweep_without_exec_only_caches(run_store, ckstore_bin, ckstore, tmp_path):
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=3,2", "--stride", "250", "--at", "1000,750")
    assert proc.returncode == 0, proc.stderr
    assert derived_count(ckstore) == 4
    # ascending step, then k, then stride, whatever order they were given in
    recipes = [l.split(": ")[1] for l in proc.stderr.splitlines() if l.startswith("sweep: lawa")]
    assert recipes == [f"lawa run={RUN} k={k} stride=250 at={at}" for at in (750, 1000) for k in (2, 3)], proc.stderr


def test_no_cache_stores_nothing(run_store, ckstore_bin, ckstore, tmp_path):
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,3", "--stride", "250", "--at", "1000",
                     "--no-cache", "--exec", "test -s {path}")
    assert proc.returncode == 0, proc.stderr
    assert derived_count(ckstore) == 0


# --------------------------------------------------------------------------------------------
# dry run and missing inputs


def test_dry_run_lists_the_plan_and_changes_nothing(run_store, ckstore_bin, ckstore, tmp_path):
    ckstore("rm", f"{RUN}@2000")
    before = sorted(p.name for p in (Path(run_store) / "objects").rglob("*"))
    marker = tmp_path / "ran"
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,6", "--stride", "100,250,500",
                     "--at", "1000,3000", "--exec", f"touch '{marker}'", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert derived_count(ckstore) == 0
    assert sorted(p.name for p in (Path(run_store) / "objects").rglob("*")) == before
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"sweep {RUN}@1000: 6 combinations:"), proc.stdout
    text = proc.stdout
    # at 1000: k=6 stride 250/500 reach below 0, stride 100 is off the grid
    assert any("lawa-k6-s250" in l and "lacks" in l and "below step 0" in l for l in lines), text
    assert any("lawa-k2-s100" in l and "lacks" in l and "900 off the run's grid (snapshots every 250 steps from 0)" in l
               for l in lines), text
    assert any("lawa-k2-s250" in l and "compute" in l and "inputs 750,1000" in l for l in lines), text
    # at 3000: k=6 stride 250 needs 2000, which was removed (on the grid, not stored)
    assert any("lawa-k6-s250" in l and "lacks" in l and "step 2000 not stored" in l for l in lines), text
    assert any("lawa-k6-s500" in l and "lacks" in l and "2000" in l for l in lines), text
    assert any("lawa-k2-s500" in l and "compute" in l for l in lines), text


def test_dry_run_shows_cached_pairs(run_store, ckstore_bin, ckstore, tmp_path):
    cache_first_requests(run_store)  # a test of the cache itself
    ckstore("get", "--run", RUN, "--lawa", "k=2,stride=250", "--at", "3000", "-o", str(tmp_path / "x.st"))
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,3", "--stride", "250", "--at", "3000",
                     "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "1 to compute, 1 cached, 0 lacking inputs" in proc.stdout
    assert any("lawa-k2-s250" in l and "cached" in l for l in proc.stdout.splitlines())


def test_pairs_lacking_inputs_are_reported_and_skipped(run_store, ckstore_bin, tmp_path):
    log = tmp_path / "log"
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,8", "--stride", "250,500",
                     "--at", "1000", "--exec", f"echo {{variant}} >> '{log}'")
    assert proc.returncode == 0, proc.stderr
    assert sorted(log.read_text().split()) == ["lawa-k2-s250", "lawa-k2-s500"]
    assert f"sweep: skipping {RUN}@1000 lawa-k8-s250: the window reaches below step 0" in proc.stderr
    assert f"sweep: skipping {RUN}@1000 lawa-k8-s500" in proc.stderr


def test_no_pair_with_inputs_is_exit_1(run_store, ckstore_bin, tmp_path):
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=8", "--stride", "500", "--at", "1000",
                     "--exec", "true")
    assert proc.returncode == 1, proc.stderr
    assert "no (k, stride) pair has all its inputs" in proc.stderr


# --------------------------------------------------------------------------------------------
# commands


def test_failing_cmd_names_the_pair_and_the_others_still_run(run_store, ckstore_bin, tmp_path):
    log = tmp_path / "log"
    exec = f'echo {{variant}} >> \'{log}\'; test {{variant}} != lawa-k4-s250'
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,4,6", "--stride", "250,500",
                     "--at", "3000", "--exec", exec)
    assert proc.returncode == 1, proc.stderr
    assert sorted(log.read_text().split()) == sorted(f"lawa-k{k}-s{nu}" for k in (2, 4, 6) for nu in (250, 500))
    errors = [l for l in proc.stderr.splitlines() if l.startswith("ckstore: error:")]
    assert errors == [f"ckstore: error: sweep: command for {RUN}@3000 (lawa-k4-s250) exited with status 1"], proc.stderr


def test_cmd_records_metrics_under_the_lawa_variant(run_store, ckstore_bin, ckstore, tmp_path):
    exec = f'"{ckstore_bin}" --store \'{run_store}\' metric "$CKSTORE_RUN@$CKSTORE_STEP" val_loss=$CKSTORE_STEP --variant "$CKSTORE_VARIANT"'
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2,4", "--stride", "250,500",
                     "--at", "3000", "--exec", exec)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(ckstore("ls", "--run", RUN, "--json").stdout)
    text = json.dumps(listing)
    for k in (2, 4):
        for nu in (250, 500):
            assert f"lawa-k{k}-s{nu}" in text, text


HOSTILE_RUNS = [
    "x{run}$(touch${IFS}marker)",
    'dq"{path}"`touch${IFS}marker`',
    "it's;touch${IFS}marker;{step}",
    "<svg&amp>{variant}",
]


@pytest.mark.parametrize("run", HOSTILE_RUNS)
def test_hostile_run_names_reach_cmd_exactly_and_run_no_code(store, ckstore, ckstore_bin, tmp_path, run):
    init_store(store, ckstore)
    put_steps(ckstore, tmp_path, run, [0, 250, 500])
    script = tmp_path / "dump.py"
    script.write_text(
        "import json, os, sys\n"
        "names = ('CKSTORE_PATH', 'CKSTORE_STEP', 'CKSTORE_RUN', 'CKSTORE_VARIANT')\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[2:], 'env': {k: os.environ[k] for k in names},\n"
        "                        'exists': os.path.exists(os.environ['CKSTORE_PATH'])}) + '\\n')\n")
    log = tmp_path / "log.jsonl"
    work = tmp_path / "cwd"
    work.mkdir()
    exec = f"{sys.executable} '{script}' '{log}' {{path}} \"{{run}}\" '{{step}}' {{variant}}"
    proc = subprocess.run([ckstore_bin, "--store", store, "sweep", "--run", run, "--lawa", "k=2,3", "--stride", "250",
                           "--at", "500", "--exec", exec], capture_output=True, text=True, cwd=work,
                          env=sweep_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("marker*")), "a run name ran shell code"
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert sorted(r["env"]["CKSTORE_VARIANT"] for r in rows) == ["lawa-k2-s250", "lawa-k3-s250"]
    for r in rows:
        assert r["argv"] == [r["env"]["CKSTORE_PATH"], run, "500", r["env"]["CKSTORE_VARIANT"]], r
        assert r["env"]["CKSTORE_RUN"] == run and r["env"]["CKSTORE_STEP"] == "500"
        assert r["exists"]
    assert not list(Path(sweep_env(tmp_path)["TMPDIR"]).iterdir())


# --------------------------------------------------------------------------------------------
# heatmap


def record(ckstore, run, step, variant, value, metric="val_loss"):
    ckstore("metric", f"{run}@{step}", f"{metric}={value}", "--variant", variant)


@pytest.mark.parametrize("run", [RUN, "<svg&amp>{variant}\"'x"])
def test_heatmap_labels_values_marks_missing_and_escapes(store, ckstore, tmp_path, run):
    init_store(store, ckstore)
    put_steps(ckstore, tmp_path, run, [0, 250, 500, 750, 1000])
    values = {(2, 250): 3.25, (4, 250): 3.125, (2, 500): 2.875}  # (4, 500) missing
    for (k, nu), v in values.items():
        record(ckstore, run, 1000, f"lawa-k{k}-s{nu}", v)
    record(ckstore, run, 750, "lawa-k4-s500", 9.5)  # another step: not drawn
    record(ckstore, run, 1000, "raw", 7.75)  # not a LAWA variant: not drawn
    out = tmp_path / "map.svg"
    ckstore("plot", "--run", run, "--metric", "val_loss", "--heatmap", "--at", "1000", "-o", str(out))
    svg = out.read_text()
    root = ET.fromstring(svg)  # well-formed XML whatever the run name
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    values_shown = [t for t in texts if t in ("3.25", "3.125", "2.875")]
    assert sorted(values_shown) == ["2.875", "3.125", "3.25"], texts
    assert texts.count("missing") == 1, texts
    assert "9.5" not in texts and "7.75" not in texts
    assert f"val_loss at step 1000 — {run}" in texts, texts
    assert "<svg&" not in svg.split("\n", 1)[1], "run name not escaped"
    # the rows and columns are the k and ν recorded
    for label in ("2", "4", "250", "500"):
        assert label in texts


def test_heatmap_grid_from_options_and_errors(run_store, ckstore, tmp_path):
    record(ckstore, RUN, 3000, "lawa-k2-s250", 1.5)
    out = tmp_path / "map.svg"
    ckstore("plot", "--run", RUN, "--metric", "val_loss", "--heatmap", "--at", "3000", "--lawa", "k=2,4,8",
            "--stride", "250,1000", "-o", str(out))
    texts = ["".join(t.itertext()) for t in ET.fromstring(out.read_text()).iter("{http://www.w3.org/2000/svg}text")]
    assert texts.count("missing") == 5 and "1.5" in texts
    proc = ckstore("plot", "--run", RUN, "--metric", "val_loss", "--heatmap", "--at", "2500", "-o", str(out), check=False)
    assert proc.returncode == 1 and "no metric 'val_loss' for a LAWA variant at step 2500" in proc.stderr
    proc = ckstore("plot", "--run", RUN, "--metric", "val_loss", "--heatmap", "-o", str(out), check=False)
    assert proc.returncode == 2 and "--heatmap needs --at" in proc.stderr
    proc = ckstore("plot", "--run", RUN, "--metric", "val_loss", "--at", "3000", "-o", str(out), check=False)
    assert proc.returncode == 2 and "--at goes with --heatmap" in proc.stderr


# --------------------------------------------------------------------------------------------
# bad arguments


BAD = [
    (["--lawa", "k=0", "--stride", "250", "--at", "3000"], "k must be an integer from 1 to 10000, got 0"),
    (["--lawa", "k=10001", "--stride", "250", "--at", "3000"], "got 10001"),
    (["--lawa", "k=99999999999999999999999", "--stride", "250", "--at", "3000"], "is not an integer"),
    (["--lawa", "k=2,2", "--stride", "250", "--at", "3000"], "--lawa k: 2 is given twice"),
    (["--lawa", "k=2", "--stride", "250,250", "--at", "3000"], "--stride: 250 is given twice"),
    (["--lawa", "k=2", "--stride", "0", "--at", "3000"], "every stride must be an integer ≥ 1, got 0"),
    (["--lawa", "k=2", "--stride", "-250", "--at", "3000"], "got -250"),
    (["--lawa", "k=2", "--stride", "250", "--at=-5"], "every step must be ≥ 0, got -5"),
    (["--lawa", "k=2", "--stride", "250", "--at", "3000,3000"], "--at: 3000 is given twice"),
    (["--lawa", "k=2", "--stride", "250", "--at", "3100"], "--at 3100: sweep-run@3100 is not a stored step (off the run's grid"),
    (["--lawa", "k=2", "--stride", "250", "--at", "4000"], "--at 4000: sweep-run@4000 is not a stored step (missing"),
    (["--lawa", "k=6,stride=1000", "--stride", "250", "--at", "3000"], "--lawa takes k=K"),
    (["--lawa", "k=2", "--at", "3000"], "--stride NU[,NU…] is required"),
    (["--lawa", "k=2,,4", "--stride", "250", "--at", "3000"], "'' is not an integer"),
    (["--lawa", "k=2", "--stride", "250", "--at", "3000", "--no-cache"], "--no-cache needs --exec"),
    (["--lawa", "k=" + ",".join(map(str, range(1, 18))), "--stride", ",".join(map(str, range(1, 17))), "--at", "3000"],
     "at most 256"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments_are_one_line_usage_errors(run_store, ckstore_bin, ckstore, tmp_path, args, message):
    before = ckstore("ls", "--run", RUN, "--json").stdout
    extra = [] if "--no-cache" in args else ["--exec", "touch marker"]
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, *args, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckstore: error: sweep: "), proc.stderr
    assert message in lines[0], lines[0]
    assert derived_count(ckstore) == 0
    assert ckstore("ls", "--run", RUN, "--json").stdout == before


# --------------------------------------------------------------------------------------------
# failures while computing, signals


def test_a_damaged_input_fails_its_step_with_exit_3_and_other_steps_still_run(run_store, ckstore_bin, ckstore, tmp_path):
    """Damage the blobs of step 250's F32 tensor (read by the window at 500, not at 3000)."""
    import hashlib
    data = snapshot_bytes(250)["a.weight"][2]
    damaged = 0
    for start in range(0, len(data), 4096):
        h = hashlib.sha256(data[start:start + 4096]).hexdigest()
        blob = Path(run_store) / "objects" / h[:2] / h
        blob.chmod(0o644)
        raw = bytearray(blob.read_bytes())
        raw[-1] ^= 0xFF
        blob.write_bytes(bytes(raw))
        damaged += 1
    assert damaged == 4
    log = tmp_path / "log"
    proc = run_sweep(ckstore_bin, run_store, tmp_path, "--run", RUN, "--lawa", "k=2", "--stride", "250",
                     "--at", "500,3000", "--exec", f"echo {{step}} >> '{log}'")
    assert proc.returncode == 3, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("ckstore: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"ckstore: error: sweep: {RUN}@500: ") and f"{RUN}@250" in errors[0], errors
    assert log.read_text().split() == ["3000"]


def test_sigint_stops_the_sweep_kills_cmd_and_removes_its_files(run_store, ckstore_bin, tmp_path):
    import signal
    import time
    started = tmp_path / "started"
    env = sweep_env(tmp_path)
    proc = subprocess.Popen([ckstore_bin, "--store", run_store, "sweep", "--run", RUN, "--lawa", "k=2,3", "--stride", "250",
                             "--at", "3000", "--exec", f"touch '{started}'; sleep 60; touch '{tmp_path}/finished'"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "CMD never started"
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "sweep: stopped by signal 2" in err
    assert not (tmp_path / "finished").exists()
    assert not list(Path(env["TMPDIR"]).iterdir()), "temporary files left behind"


def test_a_run_of_directory_snapshots_is_refused_naming_the_step(store, ckstore, ckstore_bin, tmp_path):
    init_store(store, ckstore)
    for step in (1000, 2000, 3000):
        d = tmp_path / f"dir-{step}"
        d.mkdir()
        write_safetensors(d / "model.safetensors", snapshot_bytes(step))
        (d / "config.json").write_text("{}")
        ckstore("put", str(d), "--run", "trees", "--step", str(step))
    before = ckstore("ls", "--derived", "--json").stdout
    proc = run_sweep(ckstore_bin, store, tmp_path, "--run", "trees", "--lawa", "k=2,3", "--stride", "1000", "--at", "3000")
    assert proc.returncode == 1, proc.stderr
    assert "is not a single safetensors file; sweep averages single-file snapshots only" in proc.stderr
    assert "trees@" in proc.stderr
    assert ckstore("ls", "--derived", "--json").stdout == before
