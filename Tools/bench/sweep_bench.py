#!/usr/bin/env python3
"""ckstore sweep benchmark (issue 13, section 3): a 15-pair (k, ν) sweep at one step against a
single LAWA of the largest k.

    python3 Tools/bench/sweep_bench.py [--scale 0.5] [--runs 3] [--keep DIR] [--ckstore BIN]

The sweep is `--lawa k=2,4,6,8,12 --stride 250,500,1000` at one step S: 24 distinct inputs
(S − j·250 for j < 12, S − j·500 for j < 12, S − j·1000 for j < 12). Generated snapshots
(generate.py, seeded) are stored under those 24 step numbers, oldest first, so that
consecutive inputs differ as consecutive checkpoints do. Measured, interleaved, median of the
runs (the page cache is warm; the derived cache is dropped with `gc` before each timed sweep
that caches):

  single   get --lawa k=12,stride=1000 --at S --no-cache -o FILE   (the baseline)
  sweep    sweep … --exec true                  (15 results cached, 15 files written for CMD)
  nocache  sweep … --no-cache --exec true       (15 files written, nothing cached)
  cache    sweep …                              (15 results cached, no files, no CMD)

CMD is `true`, so the times exclude evaluation. run.py calls `bench_sweep` for its "sweep"
section; this file also runs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

KS = (2, 4, 6, 8, 12)
STRIDES = (250, 500, 1000)
AT = 11_000


def sweep_steps(at: int = AT) -> list[int]:
    """The distinct input steps of the sweep at `at`, ascending."""
    return sorted({at - j * nu for nu in STRIDES for j in range(max(KS)) if at - j * nu >= 0})


def timed_cpu(cmd: list[str]) -> dict:
    """Wall time (perf_counter), peak RSS and CPU time (user + system, `/usr/bin/time -f`) of cmd.

    CPU time is quoted beside wall time because the machine is shared: on a loaded machine the
    wall time mostly measures waiting for a core, the CPU time what the command itself did."""
    import run as bench
    import time

    os.sync()
    with tempfile.NamedTemporaryFile(prefix="ckbench-time-") as tf:
        argv = ["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd] if bench.TIME_BIN else list(cmd)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise bench.CommandFailed(f"{cmd!r} exited {proc.returncode}: {proc.stderr[-2000:]}")
        if not bench.TIME_BIN:
            return {"wall_s": wall, "maxrss_kb": None, "cpu_s": None}
        rss, user, system = open(tf.name).read().split()[-3:]
    return {"wall_s": wall, "maxrss_kb": int(rss), "cpu_s": float(user) + float(system)}


def bench_sweep(ckstore: str, work: str, scale: float, runs: int, seed: int = 0) -> dict:
    """Runs the measurements; returns {"samples": {name: [{"wall_s", "maxrss_kb"}…]}, …}."""
    import run as bench  # the shared helpers (timed, generate, Store)

    steps = sweep_steps()
    folder = os.path.join(work, "data", f"sweep-f32-{scale}")
    files = bench.ensure_trajectory(folder, len(steps), "f32", scale, seed)
    store = bench.Store(ckstore, os.path.join(work, "store-sweep"))
    for path, step in zip(files, steps):
        store.put(path, step=step)
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(work, "sweep-tmp")
    os.makedirs(tmp, exist_ok=True)
    sweep = store.cmd("sweep", "--quiet", "--run", "bench", "--lawa", "k=" + ",".join(map(str, KS)),
                      "--stride", ",".join(map(str, STRIDES)), "--at", str(AT))
    single = store.cmd("get", "--quiet", "--run", "bench", "--lawa", f"k={max(KS)},stride=1000", "--at", str(AT),
                       "--no-cache", "-o", os.path.join(out, "single.safetensors"))
    commands = {
        "single": (single, False),
        "sweep": (sweep + ["--exec", "true"], True),
        "nocache": (sweep + ["--no-cache", "--exec", "true"], False),
        "cache": (sweep, True),
    }
    samples: dict[str, list] = {name: [] for name in commands}
    env_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = tmp
    try:
        for i in range(runs):
            for name, (cmd, drops_cache) in commands.items():
                if drops_cache:
                    bench.output(store.cmd("gc"))
                samples[name].append(timed_cpu(cmd))
                bench.log(f"sweep run {i + 1}/{runs}: {name} {samples[name][-1]['wall_s']:.2f} s")
    finally:
        if env_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env_tmp
    # The last cached sweep's k=12, ν=1000 result must be the single query's bytes.
    check = os.path.join(out, "check.safetensors")
    bench.output(store.cmd("get", "--quiet", "--run", "bench", "--lawa", "k=12,stride=1000", "--at", str(AT), "-o", check))
    identical = subprocess.run(["cmp", "-s", check, os.path.join(out, "single.safetensors")]).returncode == 0
    file_mb = os.path.getsize(files[-1]) / 1e6
    store.remove()
    return {"samples": samples, "inputs": len(steps), "pairs": len(KS) * len(STRIDES), "file_mb": file_mb,
            "identical_k12": identical}


def summary(result: dict) -> list[list[str]]:
    """Table rows: measurement, median, range, ratio to the single LAWA, peak RSS, median CPU
    time (user + system) and its ratio."""
    base = statistics.median(s["wall_s"] for s in result["samples"]["single"])
    cpus = [s.get("cpu_s") for s in result["samples"]["single"]]
    base_cpu = statistics.median(cpus) if None not in cpus else None
    labels = {
        "single": f"get --lawa k=12,stride=1000 --no-cache ({result['file_mb']:.0f} MB f32 inputs)",
        "sweep": f"sweep {result['pairs']} pairs, {result['inputs']} inputs, --exec true (cached + files)",
        "nocache": "sweep --no-cache --exec true (files only)",
        "cache": "sweep without --exec (cached only)",
    }
    rows = []
    for name, label in labels.items():
        walls = [s["wall_s"] for s in result["samples"][name]]
        rss = max((s["maxrss_kb"] or 0) for s in result["samples"][name]) / 1024
        m = statistics.median(walls)
        cpu = [s.get("cpu_s") for s in result["samples"][name]]
        cpu_text = "—"
        if base_cpu and None not in cpu:
            c = statistics.median(cpu)
            cpu_text = f"{c:.2f} s ({c / base_cpu:.2f}×)"
        rows.append([label, f"{m:.2f} s", f"{min(walls):.2f}–{max(walls):.2f}", f"{m / base:.2f}×", f"{rss:.0f} MB",
                     cpu_text])
    return rows


def main() -> int:
    import run as bench

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.5, help="generate.py --scale (default 0.5: about 125 MB per f32 file)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the generated files")
    ap.add_argument("--ckstore", help="binary (default $CKSTORE_BIN, .build/release/ckstore, PATH)")
    ap.add_argument("--json", help="write the samples here")
    a = ap.parse_args()
    ckstore = bench.find_ckstore(a.ckstore)
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="ckbench-sweep-")
    os.makedirs(work, exist_ok=True)
    try:
        result = bench_sweep(ckstore, work, a.scale, a.runs)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = summary(result)
    print(f"sweep benchmark: scale {a.scale}, median of {a.runs}, load average {os.getloadavg()[0]:.2f}")
    print(bench.table(rows, ["measurement", "median", "range", "vs single", "peak RSS", "CPU (user + sys)"]))
    print(f"k=12, ν=1000 from the sweep's cache identical to the single query: {result['identical_k12']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
