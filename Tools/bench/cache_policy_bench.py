#!/usr/bin/env python3
"""The default `get --lawa` command under each cache policy, against --no-cache and numpy.

    Tools/bench/cache_policy_bench.py --ckstore BIN --store STORE --run R --at S --out DIR
        [--k 6] [--stride 1000] [--runs 5] [--inputs FILE …]

STORE must hold run R with the k snapshots of the window. Each round runs, interleaved:
  always-first    cache_policy always, derived cache dropped first (`gc`): computes and caches
  second-hit-1st  cache_policy second-hit, cache and request log dropped first: computes only
  second-hit-2nd  the same query again: computes and caches
  cached          the same query a third time: served from the cache
  no-cache        `--no-cache`
  numpy           Tools/bench/numpy_lawa.py over --inputs (when given)
sync(2) runs untimed before every timed command; the page cache is not dropped. Prints the
median, min and max wall time and the peak RSS (/usr/bin/time -f %M) of each row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd: list[str]) -> tuple[float, int]:
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}: {proc.stderr}")
    return wall, int(proc.stderr.strip().splitlines()[-1])


def set_policy(store: str, policy: str) -> None:
    path = os.path.join(store, "config.json")
    config = json.load(open(path))
    config["cache_policy"] = policy
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckstore", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--at", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--stride", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--inputs", nargs="*", default=[])
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, "lawa.safetensors")
    base = [a.ckstore, "--store", a.store]
    get = base + ["get", "--quiet", "--run", a.run, "--lawa", f"k={a.k},stride={a.stride}", "--at", a.at, "-o", out]

    def drop_cache() -> None:
        subprocess.run(base + ["gc"], check=True, capture_output=True)
        try:
            os.remove(os.path.join(a.store, "cache-requests"))
        except FileNotFoundError:
            pass

    rows: dict[str, list[tuple[float, int]]] = {}
    for _ in range(a.runs):
        set_policy(a.store, "always")
        drop_cache()
        rows.setdefault("always-first", []).append(timed(get))
        set_policy(a.store, "second-hit")
        drop_cache()
        rows.setdefault("second-hit-1st", []).append(timed(get))
        rows.setdefault("second-hit-2nd", []).append(timed(get))
        rows.setdefault("cached", []).append(timed(get))
        rows.setdefault("no-cache", []).append(timed(get + ["--no-cache"]))
        if a.inputs:
            rows.setdefault("numpy", []).append(
                timed([sys.executable, os.path.join(HERE, "numpy_lawa.py"), "-o", out + ".np", *a.inputs]))
    print(f"{'row':16} {'median s':>9} {'min':>6} {'max':>6} {'peak RSS MB':>12}")
    for name, samples in rows.items():
        walls = [w for w, _ in samples]
        rss = max(r for _, r in samples) / 1000
        print(f"{name:16} {statistics.median(walls):9.3f} {min(walls):6.3f} {max(walls):6.3f} {rss:12.1f}")
    print(json.dumps({k: v for k, v in rows.items()}))


if __name__ == "__main__":
    main()
