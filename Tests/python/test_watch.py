"""Tests of the paired-evaluator side of ckstore: `metric`, `watch`, `plot`, and the pusher's
timing (`CheckpointPusher.stats`), against the real binary (see conftest.py).

`watch` runs with `--poll 0.1` and a TMPDIR of its own, so that the tests are fast and can
check that no `ckstore-watch-*` temporary folder is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ckstore import Pusher

RUN = "R"
K, NU = 3, 10
VARIANT = f"lawa-k{K}-s{NU}"
LAWA = f"k={K},stride={NU}"


@pytest.fixture(autouse=True)
def _needs_commands(has_command):
    for name in ("metric", "watch", "plot"):
        if not has_command(name):
            pytest.skip(f"this ckstore build has no '{name}' command")


def push_steps(store: str, binary: str, steps, run: str = RUN) -> None:
    """Push one small snapshot per step: two float tensors that differ from step to step."""
    with Pusher(run, store=store, binary=binary, max_in_flight=4) as pusher:
        for s in steps:
            pusher.push(s, {"w": np.arange(6, dtype=np.float32) * (s + 1), "b": np.full(3, s / 7, np.float64)})


@pytest.fixture
def run_0_50(ckstore_bin, store, ckstore):
    """A store whose run R holds steps 0, 10, …, 50 (complete LAWA k=3 windows at 20 … 50)."""
    ckstore("init")
    push_steps(store, ckstore_bin, range(0, 60, 10))
    return store


class Watch:
    """Builds and runs `ckstore watch` for one test, with its own TMPDIR and a CMD that logs
    `{step} {variant} {run}` and copies `{path}` into ``copies/``."""

    def __init__(self, binary: str, store: str, tmp: Path):
        self.binary, self.store = binary, store
        self.tmpdir = tmp / "watch-tmp"
        self.tmpdir.mkdir()
        self.log = tmp / "cmd.log"
        self.copies = tmp / "copies"
        self.copies.mkdir()
        self.env = {**os.environ, "TMPDIR": str(self.tmpdir)}

    def command(self, *options: str, exec: str | None = None) -> list[str]:
        if exec is None:
            exec = f"echo {{step}} {{variant}} {{run}} >> '{self.log}' && cp {{path}} '{self.copies}'/{{variant}}-{{step}}"
        return [self.binary, "--store", self.store, "watch", "--run", RUN, "--lawa", LAWA,
                "--poll", "0.1", "--exec", exec, *options]

    def run(self, *options: str, exec: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*options, exec=exec), capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        self.assert_no_temp_dir()
        return proc

    def start(self, *options: str, exec: str | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*options, exec=exec), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)

    def entries(self) -> list[tuple[int, str, str]]:
        if not self.log.exists():
            return []
        rows = [line.split() for line in self.log.read_text().splitlines()]
        return [(int(step), variant, run) for step, variant, run in rows]

    def assert_no_temp_dir(self) -> None:
        left = [p.name for p in self.tmpdir.iterdir()]
        assert not left, f"watch left {left} in its TMPDIR"


@pytest.fixture
def watch(ckstore_bin, store, tmp_path) -> Watch:
    return Watch(ckstore_bin, store, tmp_path)


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sha256(path: Path | bytes) -> str:
    return hashlib.sha256(path if isinstance(path, bytes) else path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# metric


def test_metric_shown_by_ls_json_and_text(run_0_50, ckstore):
    ckstore("metric", f"{RUN}@20", "a=1", "b=2", "--variant", "v")
    listing = json.loads(ckstore("ls", "--run", RUN, "--json").stdout)
    snap = next(s for s in listing["snapshots"] if s["step"] == 20)
    assert {"variant": "v", "name": "a", "value": 1.0} in snap["metrics"]
    assert {"variant": "v", "name": "b", "value": 2.0} in snap["metrics"]
    assert all(not s["metrics"] for s in listing["snapshots"] if s["step"] != 20)
    top = [(m.get("step", 20), m["variant"], m["name"], m["value"]) for m in listing["metrics"]]
    assert sorted(top) == [(20, "v", "a", 1.0), (20, "v", "b", 2.0)]  # "step" may be omitted

    text = ckstore("ls", "--run", RUN).stdout.decode()
    row = next(line for line in text.splitlines() if line.split()[:1] == ["20"])
    assert "v:a=1" in row and "v:b=2" in row


def test_metric_rerecording_replaces(run_0_50, ckstore):
    ckstore("metric", f"{RUN}@20", "a=1", "b=2", "--variant", "v")
    ckstore("metric", f"{RUN}@20", "a=3", "--variant", "v")
    ckstore("metric", f"{RUN}@20", "a=5")  # variant raw: a different series, kept apart
    listing = json.loads(ckstore("ls", "--run", RUN, "--json").stdout)
    snap = next(s for s in listing["snapshots"] if s["step"] == 20)
    assert sorted((m["variant"], m["name"], m["value"]) for m in snap["metrics"]) == [
        ("raw", "a", 5.0), ("v", "a", 3.0), ("v", "b", 2.0)]
    assert len(listing["metrics"]) == 3


@pytest.mark.parametrize("args, message", [
    (["R@20", "a=x"], "'a'"),
    (["Q@20", "a=1"], "'Q'"),  # unknown run
])
def test_metric_errors(run_0_50, ckstore, args, message):
    before = ckstore("ls", "--run", RUN, "--json").stdout
    proc = ckstore("metric", *args, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckstore: error:") and message in lines[0], proc.stderr
    assert ckstore("ls", "--run", RUN, "--json").stdout == before


# --------------------------------------------------------------------------------------------
# watch


def test_watch_runs_cmd_once_per_lawa_window(run_0_50, ckstore, watch):
    proc = watch.run("--until", "50")
    assert proc.returncode == 0, proc.stderr
    assert watch.entries() == [(s, VARIANT, RUN) for s in (20, 30, 40, 50)]
    for s in (20, 30, 40, 50):
        expected = ckstore("get", "--run", RUN, "--lawa", LAWA, "--at", str(s), "-o", "-").stdout
        assert sha256(watch.copies / f"{VARIANT}-{s}") == sha256(expected), f"LAWA file at {s} differs"
    assert "reached --until 50" in proc.stderr


def test_watch_raw_also_evaluates_raw_snapshots(run_0_50, ckstore, watch):
    proc = watch.run("--raw", "--until", "50")
    assert proc.returncode == 0, proc.stderr
    expected = []
    for s in range(0, 60, 10):
        expected.append((s, "raw", RUN))
        if s >= 20:
            expected.append((s, VARIANT, RUN))
    assert watch.entries() == expected
    for s in range(0, 60, 10):
        assert (watch.copies / f"raw-{s}").read_bytes() == ckstore("get", f"{RUN}@{s}", "-o", "-").stdout


def test_watch_from_skips_earlier_steps(run_0_50, watch):
    proc = watch.run("--from", "35", "--raw", "--until", "50")
    assert proc.returncode == 0, proc.stderr
    assert watch.entries() == [(40, "raw", RUN), (40, VARIANT, RUN), (50, "raw", RUN), (50, VARIANT, RUN)]


def test_watch_until_exits_after_last_window(run_0_50, watch):
    t0 = time.monotonic()
    proc = watch.run("--until", "30")
    assert proc.returncode == 0, proc.stderr
    assert watch.entries() == [(20, VARIANT, RUN), (30, VARIANT, RUN)]
    assert time.monotonic() - t0 < 5


def test_watch_idle_exit(run_0_50, watch):
    t0 = time.monotonic()
    proc = watch.run("--idle-exit", "0.5")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert [e[0] for e in watch.entries()] == [20, 30, 40, 50]
    assert "no new snapshot" in proc.stderr
    assert 0.5 <= took < 5


def test_watch_idle_exit_waits_for_snapshots_pushed_during_a_long_cmd(run_0_50, ckstore_bin, store, watch):
    # CMD takes longer than --idle-exit at step 50; step 60 arrives meanwhile and still counts.
    slow_at_50 = f"echo {{step}} {{variant}} {{run}} >> '{watch.log}'; test {{step}} != 50 || sleep 1.5"
    proc = watch.start("--idle-exit", "0.5", exec=slow_at_50)
    try:
        wait_for(lambda: (50, VARIANT, RUN) in watch.entries(), what="step 50")
        push_steps(store, ckstore_bin, [60])
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert [e[0] for e in watch.entries()] == [20, 30, 40, 50, 60]
    watch.assert_no_temp_dir()


def test_watch_idle_exit_on_an_empty_run(ckstore, watch):
    ckstore("init")  # the run does not exist (yet): the watch waits, says so, then gives up
    proc = watch.run("--idle-exit", "0.3")
    assert proc.returncode == 1, proc.stderr  # nothing was evaluated: the run never appeared
    assert "does not exist" in proc.stderr and "never appeared" in proc.stderr.strip().splitlines()[-1]
    assert watch.entries() == []


def test_watch_evaluates_snapshots_pushed_while_running(run_0_50, ckstore_bin, store, watch):
    proc = watch.start("--raw", "--until", "80")
    try:
        wait_for(lambda: (50, VARIANT, RUN) in watch.entries(), what="the first windows")
        assert proc.poll() is None  # still following: nothing at or beyond 80 yet
        push_steps(store, ckstore_bin, [60])
        wait_for(lambda: (60, VARIANT, RUN) in watch.entries(), what="step 60")
        push_steps(store, ckstore_bin, [70, 80])
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert [e for e in watch.entries() if e[1] == VARIANT] == [(s, VARIANT, RUN) for s in range(20, 90, 10)]
    assert [e[0] for e in watch.entries() if e[1] == "raw"] == list(range(0, 90, 10))
    watch.assert_no_temp_dir()


def test_watch_failing_cmd_is_reported_and_the_watch_goes_on(run_0_50, watch):
    fail_at_30 = f"test {{step}} != 30 || exit 7; echo {{step}} {{variant}} {{run}} >> '{watch.log}'"
    proc = watch.run("--until", "50", exec=fail_at_30)
    assert proc.returncode == 1, proc.stderr  # the watch goes on, but the end result says a step failed
    assert [e[0] for e in watch.entries()] == [20, 40, 50]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ckstore: error:")]
    assert len(errors) == 1 and f"{RUN}@30" in errors[0] and "status 7" in errors[0], proc.stderr
    assert "1 command(s) failed" in proc.stderr


def test_watch_fail_fast(run_0_50, watch):
    fail_at_30 = f"test {{step}} != 30 || exit 7; echo {{step}} {{variant}} {{run}} >> '{watch.log}'"
    proc = watch.run("--until", "50", "--fail-fast", exec=fail_at_30)
    assert proc.returncode == 1
    assert [e[0] for e in watch.entries()] == [20]
    assert f"{RUN}@30" in proc.stderr and "status 7" in proc.stderr


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watch_stops_cleanly_on_signal_during_cmd(run_0_50, watch, tmp_path, sig):
    started = tmp_path / "started"
    sleeper = tmp_path / "sleeper.pid"
    # A long-running evaluator that is not the shell itself (sh waits for it).
    slow = f"echo {{step}} >> '{started}'; sleep 30 & echo $! > '{sleeper}'; wait; echo {{step}} done >> '{watch.log}'"
    proc = watch.start("--until", "50", exec=slow)
    try:
        wait_for(lambda: sleeper.exists() and sleeper.read_text().strip(), what="the CMD to start")
        pid = int(sleeper.read_text())
        assert process_alive(pid)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=5)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert took < 1.0, f"watch took {took:.2f} s to stop"
    assert "stopped by signal" in stderr
    assert "error" not in stderr  # the interrupted CMD is not reported as a failure
    wait_for(lambda: not process_alive(pid), timeout=2, what="the CMD's sleep to be terminated")
    assert started.read_text().split() == ["20"]  # nothing started after the signal
    assert watch.entries() == []
    watch.assert_no_temp_dir()


def test_watch_stops_cleanly_on_signal_while_polling(run_0_50, watch):
    proc = watch.start("--until", "1000")
    try:
        wait_for(lambda: len(watch.entries()) == 4, what="the windows 20-50")
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and took < 1.0, (stderr, took)
    watch.assert_no_temp_dir()


@pytest.mark.parametrize("args", [
    ["--lawa", "k=0,stride=10"],
    ["--lawa", LAWA, "--poll", "0"],
    ["--lawa", LAWA, "--idle-exit", "-1"],
])
def test_watch_usage_errors(ckstore, args):
    ckstore("init")
    proc = ckstore("watch", "--run", RUN, "--exec", "true", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("ckstore: error:")


# --------------------------------------------------------------------------------------------
# plot

SVG = "{http://www.w3.org/2000/svg}"


def test_plot_writes_svg_with_a_line_per_variant(run_0_50, ckstore, tmp_path):
    for s in range(0, 60, 10):
        ckstore("metric", f"{RUN}@{s}", f"val_loss={1.0 / (s + 1) + 0.3}")
        if s >= 20:
            ckstore("metric", f"{RUN}@{s}", f"val_loss={1.0 / (s + 1) + 0.25}", "--variant", VARIANT)
    ckstore("metric", f"{RUN}@50", "other=3")  # another metric is not drawn
    out = tmp_path / "plot.svg"
    proc = ckstore("plot", "--run", RUN, "--metric", "val_loss", "-o", str(out))
    assert proc.stdout == b""
    root = ET.parse(out).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    polylines = root.findall(f".//{SVG}polyline")
    assert len(polylines) == 2
    assert sorted(len(p.get("points").split()) for p in polylines) == [4, 6]
    assert len({p.get("stroke") for p in polylines}) == 2
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "raw" in texts and VARIANT in texts  # a legend entry per variant
    assert "other" not in texts
    numeric = [t for t in texts if t.replace(".", "", 1).replace("-", "", 1).isdigit()]
    assert "0" in numeric and "50" in numeric  # x axis ticks cover the steps
    assert any("." in t for t in numeric)  # y axis ticks (losses between 0.27 and 1.3)
    assert "step" in texts and "val_loss" in texts
    # the same plot to standard output
    assert ckstore("plot", "--run", RUN, "--metric", "val_loss", "-o", "-").stdout == out.read_bytes()


def test_plot_unknown_metric_or_run(run_0_50, ckstore, tmp_path):
    out = tmp_path / "none.svg"
    for args in (["--run", RUN, "--metric", "val_loss"], ["--run", "Q", "--metric", "val_loss"]):
        proc = ckstore("plot", *args, "-o", str(out), check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("ckstore: error:") and len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()


# --------------------------------------------------------------------------------------------
# the trainer's side: push timing


def test_push_stats_blocked_time_far_below_put_time(slow_bin, ckstore, store):
    sleep = 0.4
    ckstore("init")
    pusher = Pusher("timing", store=store, binary=slow_bin(sleep), max_in_flight=1)
    assert pusher.stats.pushes == 0 and pusher.stats.puts == 0 and pusher.stats.bytes == 0
    state = {"w": np.zeros(1 << 16, np.float32)}
    futures = []
    for step in (1, 2, 3):
        futures.append(pusher.push(step, state))
        futures[-1].result()  # the training loop does other work while the put runs
    pusher.close()
    st = pusher.stats
    assert st.pushes == 3 and st.puts == 3
    assert st.put_total >= 3 * sleep and st.put_mean >= sleep and st.put_max >= sleep
    assert st.put_max <= st.put_total
    assert st.blocked_max <= st.blocked_total and st.blocked_mean == pytest.approx(st.blocked_total / 3)
    assert st.blocked_mean < st.put_mean / 10, str(st)
    listing = json.loads(ckstore("ls", "--run", "timing", "--json").stdout)
    assert st.bytes == sum(s["logical_bytes"] for s in listing["snapshots"])
    line = str(st)
    assert line.startswith("push: 3 pushes, blocked ") and "ms/push, max" in line and "ms/put" in line


def test_push_stats_include_back_pressure(slow_bin, ckstore, store):
    sleep = 0.4
    ckstore("init")
    with Pusher("bp", store=store, binary=slow_bin(sleep), max_in_flight=1, interval=1) as pusher:
        pusher.maybe_push(1, {"w": np.zeros(4, np.float32)})
        pusher.maybe_push(2, {"w": np.ones(4, np.float32)})  # waits for the first put
        assert pusher.stats.pushes == 2 and pusher.stats.puts >= 1
    st = pusher.stats
    assert st.pushes == 2 and st.puts == 2
    assert st.blocked_max >= sleep * 0.8 and st.blocked_total < st.put_total
