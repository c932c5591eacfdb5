#!/usr/bin/env python3
"""Local blobs vs S3 blobs: put, get and LAWA k=6 throughput on generated GPT-2 snapshots.

    python3 Tools/bench/generate.py --out /tmp/gen --steps 6
    . /tmp/ckstore-ceph-$(id -u)/env        # Tools/services/ceph.sh start (AWS_* variables)
    python3 Tools/bench/s3_compare.py --gen /tmp/gen --ckstore .build/release/ckstore --runs 3

The local and SQLite+S3 stores keep SQLite metadata in a local folder; the local store keeps
blobs in objects/, the other in a bucket (`sqlite:///path?blobs=s3://bucket/prefix`), so their
difference is the blob store alone. With --pg-url, a PostgreSQL+S3 store
(`postgres://…?blobs=s3://…`, what several hosts share) is measured too. Each measurement alternates local and S3 in the same session; the median of the runs
is reported (MB = 10^6 bytes of safetensors file). put: the newest snapshot into an empty store
(every chunk new; the store is emptied again with rm + gc after each run). get: that snapshot to a
file. LAWA: k=6 over the six snapshots, --no-cache (computed every time).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid


def timed(cmd: list[str]) -> float:
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")
    return elapsed


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gen", required=True, help="folder of generate.py output (6 steps, 1000 apart)")
    ap.add_argument("--ckstore", default=".build/release/ckstore")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/ckstore-s3-compare")
    ap.add_argument("--bucket", default=f"ckstore-bench-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--json", help="write every sample here")
    ap.add_argument("--pg-url", help="also measure postgres://…?blobs=s3://… (PostgreSQL metadata, S3 blobs)")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.gen, "step*.safetensors")))
    assert len(files) >= 6, "need 6 snapshots"
    files = files[-6:]
    size = os.path.getsize(files[-1])
    steps = [int(os.path.basename(f)[4:10]) for f in files]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    tag = uuid.uuid4().hex[:6]
    stores = {
        "local": os.path.join(args.work, "local"),
        "s3": f"sqlite://{args.work}/s3meta?blobs=s3://{args.bucket}/bench-{tag}",
    }
    empties = {
        "local": os.path.join(args.work, "local-put"),
        "s3": f"sqlite://{args.work}/s3put?blobs=s3://{args.bucket}/put-{tag}",
    }
    if args.pg_url:
        pg = args.pg_url.replace("postgresql://", "postgres://", 1)
        stores["pg+s3"] = f"{pg}?blobs=s3://{args.bucket}/pgbench-{tag}&schema=bench_{tag}"
        empties["pg+s3"] = f"{pg}?blobs=s3://{args.bucket}/pgput-{tag}&schema=benchput_{tag}"
    names = list(stores)
    ck = args.ckstore
    for name, store in stores.items():  # the six snapshots LAWA reads (untimed)
        for f, s in zip(files, steps):
            run([ck, "--store", store, "put", "--quiet", "--run", "bench", "--step", str(s), f])
    samples: dict[str, dict[str, list[float]]] = {"put": {}, "get": {}, "lawa": {}}
    out = os.path.join(args.work, "out.safetensors")
    for _ in range(args.runs):
        for name in names:
            empty = empties[name]
            samples["put"].setdefault(name, []).append(
                timed([ck, "--store", empty, "put", "--quiet", "--run", "p", "--step", str(steps[-1]), files[-1]]))
            run([ck, "--store", empty, "rm", f"p@{steps[-1]}"])
            run([ck, "--store", empty, "gc", "--all-orphans"])
        for name in names:
            samples["get"].setdefault(name, []).append(
                timed([ck, "--store", stores[name], "get", "--quiet", f"bench@{steps[-1]}", "-o", out]))
            os.unlink(out)
        for name in names:
            samples["lawa"].setdefault(name, []).append(
                timed([ck, "--store", stores[name], "get", "--quiet", "--run", "bench", "--lawa", "k=6,stride=1000", "--at",
                       str(steps[-1]), "--no-cache", "-o", out]))
            os.unlink(out)
    print(f"snapshot {size / 1e6:.1f} MB; median of {args.runs} runs; MB/s of safetensors bytes (LAWA: of its 6 inputs)")
    titles = {"local": "local", "s3": "SQLite+S3", "pg+s3": "PostgreSQL+S3"}
    print(f"{'':8} " + " ".join(f"{titles[n]:>16}" for n in names))
    for op, label in (("put", "put"), ("get", "get"), ("lawa", "LAWA k=6")):
        cells = []
        for name in names:
            t = statistics.median(samples[op][name])
            volume = size * (6 if op == "lawa" else 1)
            cells.append(f"{volume / 1e6 / t:7.0f} ({t:5.2f} s)")
        print(f"{label:8} " + " ".join(f"{c:>16}" for c in cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "samples": samples}, f, indent=1)
    for name in names:  # empty the buckets' prefixes (Ceph's memstore keeps objects in RAM)
        if name != "local":
            run([ck, "--store", stores[name], "rm", *[f"bench@{s}" for s in steps]])
            run([ck, "--store", stores[name], "gc", "--all-orphans"])
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
