"""The benchmark harness (Tools/bench/run.py) runs end to end in quick mode and reports every row.

One run at --scale 0.05 --runs 1 of every group (the GPT-2-large group at --large-scale 0.02,
the tiny group with 2/4 snapshots, the filters group with one real and one bogus setting),
then checks the Markdown table, the target checks and the JSON: every sample, the machine,
`uptime` per group and the binary's git commit. Plus the option errors (usage, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "Tools" / "bench" / "run.py"


def bench(ckstore_bin: str, tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN), "--ckstore", ckstore_bin, "--json", str(tmp_path / "r.json"),
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick(ckstore_bin: str, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    proc = bench(ckstore_bin, tmp, "--scale", "0.05", "--runs", "1", "--large", "--large-scale", "0.02",
                 "--tiny-sizes", "2,4", "--tiny-rounds", "2", "--filters", "hybrid,no-such-filter")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((tmp / "r.json").read_text())


def test_every_group_runs_without_error(quick):
    _, result = quick
    assert list(result["groups"]) == ["lawa", "device", "sweep", "large", "filters", "tiny"]
    for name, entry in result["groups"].items():
        assert "error" not in entry, f"{name}: {entry.get('error')}"
        assert "load average" in entry["uptime_before"] and "load average" in entry["uptime_after"]


def test_json_describes_machine_and_binary(quick):
    _, result = quick
    m = result["machine"]
    for key in ("cpu_model", "nproc", "mem_total_bytes", "kernel", "uptime_start", "uptime_end",
                "ckstore_binary", "ckstore_version"):
        assert m[key], key
    assert len(m["ckstore_git_commit"]) == 40 and len(m["ckstore_sources_commit"]) == 40
    assert result["params"]["runs"] == 1 and result["params"]["scale"] == 0.05


def test_json_keeps_every_sample(quick):
    _, result = quick
    lawa = result["groups"]["lawa"]["raw"]
    for dtype in ("f32", "bf16"):
        samples = lawa[dtype]["samples"]
        assert set(samples) == {"default command, first request", "default command, second request",
                                "default command, third request", "--no-cache", "numpy_lawa.py"}
        assert all(len(v) == 1 and v[0]["wall_s"] > 0 and v[0]["exit"] == 0 for v in samples.values())
        assert "compression" in lawa[dtype]["store_config"]   # the store's config.json, recorded
        assert lawa[dtype]["check"]["identical"]
    device = result["groups"]["device"]["raw"]
    assert len(device["samples"]) == 7 and device["get_byte_exact"]
    sweep = result["groups"]["sweep"]["raw"]
    assert set(sweep["samples"]) == {"single", "exec", "nocache", "default"} and sweep["identical_k12"]
    large = result["groups"]["large"]["raw"]
    assert large["model"] == "gpt2-large" and len(large["samples"]) == 3
    assert all(s["maxrss_kb"] for v in large["samples"].values() for s in v)


def test_table_has_every_row(quick):
    proc, result = quick
    rows = result["table"]["rows"]
    measured = {r[1] for r in rows}
    for name in ("default command, first request", "default command, third request", "--no-cache", "numpy_lawa.py",
                 "ckstore put", "cp F dst && sync", "dd if=F of=dst bs=4M conv=fsync", "ckstore get -o dst",
                 "cat F > dst", "ckstore get -o /dev/null", "ckstore get -o - | cat > /dev/null",
                 "sweep --no-cache --exec true (files only)", "ckstore default command (first request)",
                 "f32 hybrid: stored / raw", "bf16 hybrid: stored / raw", "show R@500"):
        assert name in measured, name
    assert all(len(r) == 5 for r in rows)
    # The §1 group names the cache policy the default command ran under.
    assert any(r[0].startswith("§1 LAWA k=6 f32") and "cache_policy" in r[0] for r in rows)
    # A pipe inside a cell is escaped, so the Markdown table keeps five columns.
    assert "get -o - \\| cat > /dev/null" in proc.stdout
    targets = {t[0]: t for t in result["targets"]["rows"]}
    for name in ("§1 f32: default command (first request) vs --no-cache", "§1 bf16: numpy / default command "
                 "(first request)", "§1 f32: ckstore peak RSS (any row)", "§2 put vs `cp F dst && sync`",
                 "§2 put vs `dd if=F of=dst bs=4M conv=fsync`", "§2 get -o file vs `cat F > dst`",
                 "§3 sweep --no-cache --exec true (files only) vs one LAWA k=12 --no-cache",
                 "GPT-2-large: ckstore --no-cache vs numpy", "GPT-2-large: ckstore peak RSS"):
        assert name in targets, name
        assert targets[name][3] in ("met", "MISSED")


def test_rejected_filter_is_skipped_with_a_note(quick):
    _, result = quick
    rejected = result["groups"]["filters"]["raw"]["rejected"]
    assert list(rejected) == ["no-such-filter"] and "no-such-filter" in rejected["no-such-filter"]
    assert not any(r[1].startswith(("f32 no-such-filter", "bf16 no-such-filter")) for r in result["table"]["rows"])
    assert any("`no-such-filter` skipped" in r[1] for r in result["table"]["rows"])


@pytest.mark.parametrize("args", [["--only", "nosuch"], ["--skip", "lawa,bogus"], ["--runs", "0"],
                                  ["--scale", "-1"], ["--tiny-sizes", "x"], ["--tiny-sizes", "0"],
                                  ["--tiny-rounds", "0"], ["--large-scale", "0"]])
def test_bad_options_are_usage_errors(ckstore_bin: str, tmp_path: Path, args: list[str]):
    proc = bench(ckstore_bin, tmp_path, *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_only_and_skip_choose_groups():
    from importlib import util
    spec = util.spec_from_file_location("bench_run", RUN)
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_args([]).groups == ["lawa", "device", "sweep", "filters", "tiny"]
    assert mod.parse_args(["--large"]).groups == ["lawa", "device", "sweep", "large", "filters", "tiny"]
    assert mod.parse_args(["--only", "large"]).groups == ["large"]
    assert mod.parse_args(["--skip", "tiny,sweep"]).groups == ["lawa", "device", "filters"]
    assert mod.parse_args(["--only", "sweep,lawa", "--skip", "lawa"]).groups == ["sweep"]


def _benchlib():
    tools = str(REPO / "Tools" / "bench")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from benchlib import group_large, measure, report
    return group_large, measure, report


def test_a_killed_or_failing_baseline_is_recorded_not_fatal():
    _, measure, _ = _benchlib()
    killed = measure.timed(["bash", "-c", "kill -9 $$"], check=False)
    assert killed["exit"] == -9 and killed["failure"] == "killed by SIGKILL (9)"
    oom = measure.timed([sys.executable, "-c", "raise MemoryError"], check=False)
    assert oom["exit"] == 1 and "MemoryError" in oom["stderr_tail"] and oom["maxrss_kb"] > 0
    with pytest.raises(measure.CommandFailed, match="exit 1"):
        measure.timed([sys.executable, "-c", "raise MemoryError"])


def test_large_row_reports_how_numpy_failed():
    group_large, _, report = _benchlib()
    ok = {"wall_s": 20.0, "maxrss_kb": 110_000, "cpu_s": 30.0, "exit": 0}
    dead = {"wall_s": 41.0, "maxrss_kb": 23_000_000, "cpu_s": 40.0, "exit": -9, "failure": "killed by SIGKILL (9)",
            "stderr_tail": ""}
    raw = {"model": "gpt2-large", "scale": 1.0, "k": 6, "file_bytes": 3_096_160_912, "put": [], "stats": {},
           "samples": {"ckstore --no-cache": [ok], "numpy_lawa.py": [dead]}}
    s = report.Summary()
    group_large.summarize(raw, s)
    numpy_row = next(r for r in s.rows if r[1] == "numpy_lawa.py")
    assert numpy_row[2] == "failed" and "killed by SIGKILL (9) after 41 s" in numpy_row[4]
    assert "peak RSS 23552 MB" in numpy_row[4]
    check = next(c for c in s.checks if c[0] == "GPT-2-large: ckstore --no-cache vs numpy")
    assert "numpy failed: killed by SIGKILL (9)" in check[1]


def test_cache_policies_add_rows_and_skip_a_rejected_value(ckstore_bin: str, tmp_path: Path):
    # Two rounds: the order rotates, so in the second round the default rows run after the
    # rejected policy's block and fail unless the store's config.json was restored.
    proc = bench(ckstore_bin, tmp_path, "--only", "lawa", "--scale", "0.02", "--runs", "2",
                 "--cache-policies", "always,no-such-policy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    raw = result["groups"]["lawa"]["raw"]["f32"]
    assert "error" not in result["groups"]["lawa"]
    assert len(raw["samples"]["cache_policy always: first request"]) == 2
    assert len(raw["samples"]["default command, first request"]) == 2
    assert not any("no-such-policy" in k for k in raw["samples"])
    assert "no-such-policy" in raw["rejected_policies"]["no-such-policy"]
    assert any("`no-such-policy` skipped" in r[1] for r in result["table"]["rows"])
