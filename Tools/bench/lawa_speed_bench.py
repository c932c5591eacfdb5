#!/usr/bin/env python3
"""Averaging path speed (issue 13, sections 1 and 3): several ckstore binaries side by side.

    Tools/bench/lawa_speed_bench.py --ckstore NAME=BIN [NAME=BIN …] --runs 3
        [--f32 STORE:RUN:AT:DIR] [--bf16 STORE:RUN:AT:DIR] [--sweep STORE:RUN:AT] [--json FILE]

For each binary, and in each round in the same rotating order:
  f32 / bf16   get --lawa k=6,stride=1000 --at AT --no-cache -o FILE     (STORE holds RUN)
  single       get --lawa k=12,stride=1000 --at AT --no-cache -o FILE    (the sweep store)
  sweep        sweep --lawa k=2,4,6,8,12 --stride 250,500,1000 --at AT --no-cache --exec true
and, once per round, Tools/bench/numpy_lawa.py over the six files of DIR (sorted, oldest
first). `sync` runs untimed before every command; the page cache stays warm; outputs go to a
temporary folder on the same disk ($TMPDIR for the sweep's files). Prints the median, min and
max wall time, the peak RSS and the median CPU time (user + system) of every row.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd: list[str], env: dict | None = None) -> dict:
    os.sync()
    with tempfile.NamedTemporaryFile(prefix="lawa-time-") as tf:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}: {proc.stderr[-2000:]}")
        rss, user, system = open(tf.name).read().split()[-3:]
    return {"wall_s": wall, "rss_mb": int(rss) / 1024, "cpu_s": float(user) + float(system)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckstore", nargs="+", required=True, help="NAME=BIN …")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--f32", help="STORE:RUN:AT:DIR")
    ap.add_argument("--bf16", help="STORE:RUN:AT:DIR")
    ap.add_argument("--sweep", help="STORE:RUN:AT")
    ap.add_argument("--json")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.ckstore]
    work = tempfile.mkdtemp(prefix="lawa-speed-", dir=os.environ.get("TMPDIR", "/tmp"))
    env = dict(os.environ, TMPDIR=work)
    rows: list[tuple[str, list[str], dict | None]] = []
    for label, spec in (("f32", a.f32), ("bf16", a.bf16)):
        if not spec:
            continue
        store, run, at, folder = spec.split(":")
        for name, binary in bins:
            out = os.path.join(work, f"{label}-{name}.safetensors")
            rows.append((f"{name} lawa k=6 {label}", [binary, "--store", store, "get", "--quiet", "--run", run, "--lawa",
                                                       "k=6,stride=1000", "--at", at, "--no-cache", "-o", out], None))
        inputs = sorted(glob.glob(os.path.join(folder, "*.safetensors")))[-6:]
        rows.append((f"numpy_lawa.py {label}", [sys.executable, os.path.join(HERE, "numpy_lawa.py"), "-o",
                                               os.path.join(work, f"{label}-numpy.safetensors"), *inputs], None))
    if a.sweep:
        store, run, at = a.sweep.split(":")
        for name, binary in bins:
            rows.append((f"{name} single k=12", [binary, "--store", store, "get", "--quiet", "--run", run, "--lawa",
                                                 "k=12,stride=1000", "--at", at, "--no-cache", "-o",
                                                 os.path.join(work, f"single-{name}.safetensors")], None))
            rows.append((f"{name} sweep 15", [binary, "--store", store, "sweep", "--quiet", "--run", run, "--lawa",
                                              "k=2,4,6,8,12", "--stride", "250,500,1000", "--at", at, "--no-cache",
                                              "--exec", "true"], env))
    samples: dict[str, list[dict]] = {r[0]: [] for r in rows}
    loads = []
    for i in range(a.runs):
        order = rows[i % len(rows):] + rows[:i % len(rows)]
        for label, cmd, e in order:
            loads.append(os.getloadavg()[0])
            samples[label].append(timed(cmd, e))
            print(f"round {i + 1}: {label} {samples[label][-1]['wall_s']:.2f} s", file=sys.stderr)
    print(f"median of {a.runs}, load average {min(loads):.1f}–{max(loads):.1f}")
    print("| row | wall, median (range) | peak RSS | CPU (user + sys), median |")
    print("| --- | --- | --- | --- |")
    for label, _, _ in rows:
        s = samples[label]
        w = [x["wall_s"] for x in s]
        print(f"| {label} | {statistics.median(w):.2f} s ({min(w):.2f}–{max(w):.2f}) | "
              f"{max(x['rss_mb'] for x in s):.0f} MB | {statistics.median(x['cpu_s'] for x in s):.2f} s |")
    outs = sorted(glob.glob(os.path.join(work, "*.safetensors")))
    for group in ("f32-", "bf16-", "single-"):
        files = [f for f in outs if os.path.basename(f).startswith(group) and "numpy" not in f]
        same = all(subprocess.run(["cmp", "-s", files[0], f]).returncode == 0 for f in files[1:]) if files else None
        print(f"{group.rstrip('-')} outputs of every binary identical: {same}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"samples": samples, "loads": loads}, f, indent=1)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
