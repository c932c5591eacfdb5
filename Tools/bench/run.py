#!/usr/bin/env python3
"""ckstore benchmark: every issue-13 row side by side on generated GPT-2 trajectories.

    Tools/bench/run.sh [--scale 1] [--runs 3] [--only G | --skip G,…] [--large] [--cold]
                       [--filters none,bitshuffle,…] [--keep DIR] [--json PATH] [--ckstore BIN]

Groups (benchlib/group_*.py), in this order:
  lawa     §1 the default command `get --lawa k=6,stride=1000 --at S -o out` (first request,
           second request, cached repeat) vs --no-cache vs numpy_lawa.py, f32 and bf16, RSS
  device   §2 put vs `cp && sync` and `dd conv=fsync`; get -o file vs `cat >`; get to /dev/null
  sweep    §3 15 (k, ν) pairs vs one LAWA k=12
  large    §4 GPT-2-large LAWA k=6 vs numpy (opt-in: --large or --only large; ~45 GB of disk)
  filters  §5 stored/raw and put speed per float_filter (--filters), f32 and bf16
  tiny     ls/show/get/put latency with 10, 100 and 1000 tiny snapshots in the store

Every comparison runs on the same files in the same session, interleaved (the order rotates
from round to round); the table shows the median and the range of the rounds, the JSON keeps
every sample, the machine, `uptime` before and after each group and the binary's git commit.
sync(2) runs untimed before every timed command; --cold also drops the page cache (root).
Quick mode: --scale 0.1 --runs 1. MB = 10^6 bytes; throughput counts the safetensors file bytes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import env  # noqa: E402
from benchlib.measure import drop_caches, log, uptime  # noqa: E402
from benchlib.report import CHECK_HEADER, HEADER, Summary, table  # noqa: E402

GROUPS = ("lawa", "device", "sweep", "large", "filters", "tiny")
DEFAULT_FILTERS = "none,byteshuffle,bitshuffle,hybrid"


class Context:
    """What every group gets: the options, the binary, the work folder, shared data."""

    def __init__(self, a, ckstore: str, work: str):
        self.a, self.ckstore, self.work = a, ckstore, work
        self.out = os.path.join(work, "out")
        os.makedirs(self.out, exist_ok=True)
        self.scale, self.runs, self.seed, self.keep = a.scale, a.runs, a.seed, bool(a.keep)
        self.cold, self.large_runs, self.large_scale = a.cold, a.large_runs, a.large_scale
        self.filters = [f for f in a.filters.split(",") if f]
        self.tiny_rounds = a.tiny_rounds
        self.cache_policies = [p for p in a.cache_policies.split(",") if p]
        self.tiny_sizes = tuple(int(x) for x in a.tiny_sizes.split(",") if x)
        self.sweep_scale = a.sweep_scale if a.sweep_scale is not None else a.scale / 2

    def trajectory(self, dtype: str, steps: int, scale: float | None = None) -> list[str]:
        """A generated trajectory, shared by the groups (generated once per call)."""
        from benchlib.data import ensure_trajectory
        scale = self.scale if scale is None else scale
        return ensure_trajectory(os.path.join(self.work, "data", f"{dtype}-{steps}-{scale}"), steps, dtype,
                                 scale, self.seed)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds per comparison (median reported; default 3)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="generate.py --scale (1 = GPT-2 small, 498 MB per f32 snapshot)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="run only these groups (comma separated): " + ",".join(GROUPS))
    ap.add_argument("--skip", default="", help="skip these groups (comma separated)")
    ap.add_argument("--large", action="store_true", help="add the GPT-2-large group (not in CI)")
    ap.add_argument("--large-runs", type=int, default=1, help="rounds of the GPT-2-large group (default 1)")
    ap.add_argument("--large-scale", type=float, default=1.0,
                    help="generate.py --scale of the GPT-2-large group (1 = the real shape; less for tests)")
    ap.add_argument("--cold", action="store_true",
                    help="device group: drop the page cache before every timed command (needs root)")
    ap.add_argument("--filters", default=DEFAULT_FILTERS,
                    help=f"filters group: float_filter values to compare (default {DEFAULT_FILTERS}); "
                         "a value the binary rejects is skipped with a note")
    ap.add_argument("--cache-policies", default="",
                    help="lawa group: also time the first/second/third request under each of these "
                         "cache_policy values (e.g. always,second-hit), beside the store's default")
    ap.add_argument("--tiny-sizes", default="10,100,1000",
                    help="tiny group: snapshot counts of its stores (default 10,100,1000)")
    ap.add_argument("--tiny-rounds", type=int, default=15,
                    help="tiny group: rounds of queries (default 15; at least 3 × --runs)")
    ap.add_argument("--sweep-scale", type=float, default=None,
                    help="generate.py --scale of the sweep's 24 snapshots (default --scale / 2)")
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR and keep it: generated files are reused by the next call")
    ap.add_argument("--json", default=os.path.join(env.HERE, "results", "latest.json"),
                    help="raw results (default Tools/bench/results/latest.json)")
    ap.add_argument("--ckstore", help="binary (default $CKSTORE_BIN, .build/release/ckstore, PATH)")
    a = ap.parse_args(argv)
    if a.runs < 1 or a.large_runs < 1 or a.tiny_rounds < 1 or a.scale <= 0 or a.large_scale <= 0 or \
            (a.sweep_scale is not None and a.sweep_scale <= 0):
        ap.error("--runs, --large-runs and --tiny-rounds must be ≥ 1, the scales > 0")
    try:
        sizes = [int(x) for x in a.tiny_sizes.split(",") if x]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or max(sizes) > 100_000:
        ap.error("--tiny-sizes: comma-separated counts between 1 and 100000")
    names = set(GROUPS)
    chosen = [g for g in (a.only or "").split(",") if g]
    skipped = [g for g in a.skip.split(",") if g]
    bad = [g for g in chosen + skipped if g not in names]
    if bad:
        ap.error(f"unknown group(s) {','.join(bad)}; groups: {','.join(GROUPS)}")
    if chosen:
        a.groups = [g for g in GROUPS if g in chosen and g not in skipped]
    else:
        a.groups = [g for g in GROUPS if g not in skipped and (g != "large" or a.large)]
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    for tool in ("cp", "cat", "cmp", "dd", "sync"):
        if not shutil.which(tool):
            sys.exit(f"run.py: {tool} not found")
    if not os.access("/usr/bin/time", os.X_OK):
        log("/usr/bin/time is missing (run.sh installs it as root): peak RSS is an upper bound, no CPU time")
    ckstore = env.find_ckstore(a.ckstore)
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="ckbench-")
    os.makedirs(work, exist_ok=True)
    if a.cold and not drop_caches():
        log("--cold: /proc/sys/vm/drop_caches is not writable (not root): runs are warm")
        a.cold = False
    started = time.time()
    machine = env.machine_info(ckstore, work)
    log(f"ckstore {machine['ckstore_version']} at {ckstore} (commit {machine['ckstore_git_commit'][:10]}); "
        f"groups {','.join(a.groups)}; work folder {work}")
    ctx = Context(a, ckstore, work)
    results: dict = {}
    try:
        for name in a.groups:
            mod = importlib.import_module(f"benchlib.group_{name}")
            entry = results[name] = {"uptime_before": uptime()}
            t0 = time.time()
            log(f"group {name}")
            try:
                entry["raw"] = mod.run(ctx)
            except Exception as e:  # a failing group is reported, the others still run
                entry["error"] = f"{type(e).__name__}: {e}"
                entry["traceback"] = traceback.format_exc()
                log(f"group {name} failed: {entry['error']}")
            entry["duration_s"] = round(time.time() - t0, 1)
            entry["uptime_after"] = uptime()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine["uptime_end"] = uptime()
    machine["loadavg_end"] = os.getloadavg()
    machine["duration_s"] = round(time.time() - started, 1)

    s = Summary()
    for name, entry in results.items():
        if "raw" in entry:
            importlib.import_module(f"benchlib.group_{name}").summarize(entry["raw"], s)
        else:
            s.note(name, f"group failed: {entry['error'][:300]}")
    params = {"runs": a.runs, "scale": a.scale, "seed": a.seed, "groups": a.groups, "cold": a.cold,
              "filters": ctx.filters, "cache_policies": ctx.cache_policies, "sweep_scale": ctx.sweep_scale,
              "large_runs": a.large_runs, "large_scale": a.large_scale,
              "command": " ".join(["Tools/bench/run.sh"] + (sys.argv[1:] if argv is None else list(argv)))}
    loads = "; ".join(f"{n} {e['uptime_before'].split('load average:')[-1].strip()} → "
                      f"{e['uptime_after'].split('load average:')[-1].strip()}" for n, e in results.items())
    report = "\n".join([
        f"ckstore benchmark: `{params['command']}`",
        env.headline(machine),
        f"scale {a.scale}, {a.runs} round(s) per comparison"
        f"{f' ({a.large_runs} for large)' if 'large' in a.groups else ''} (median, range min–max); "
        f"{'cold page cache' if a.cold else 'warm page cache'}; load average (1, 5, 15 min) per group: {loads}",
        "", table(s.rows, HEADER), "", table(s.checks, CHECK_HEADER)])
    print(report)
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"machine": machine, "params": params, "groups": results,
                   "table": {"header": HEADER, "rows": s.rows},
                   "targets": {"header": CHECK_HEADER, "rows": s.checks}, "report": report}, f, indent=1)
    log(f"raw results in {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
