#!/usr/bin/env python3
"""put and get against the device: ckstore beside cp, dd and cat on the same bytes.

    python3 Tools/bench/device_bench.py --file SNAPSHOT.safetensors [--runs 5]
        [--ckstore BIN[,BIN2…]] [--work DIR] [--json PATH] [--cold]

For each run, in a rotating order: `ckstore put` (durable, into a fresh store), `cp FILE dst
&& sync`, `dd if=FILE of=dst bs=4M conv=fsync`; then `ckstore get REF -o dst`, `cat FILE >
dst`, `ckstore get REF -o /dev/null`, `ckstore get REF -o - | cat > /dev/null`. Several
binaries (comma separated, e.g. a before and an after build) are interleaved in the same way,
each with its own store. Before every timed command: `sync` (untimed), and with `--cold` also
`echo 3 > /proc/sys/vm/drop_caches` (needs root; the script says whether it worked). Prints a
Markdown table of medians and min–max ranges (MB/s, MB = 10^6 bytes of the input file) and
writes every sample to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib.measure import drop_caches  # noqa: E402


def timed(cmd: str, cold: bool) -> float:
    os.sync()
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    subprocess.run(["/bin/bash", "-c", cmd], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", required=True, help="the snapshot to put and get (e.g. a generate.py output)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ckstore", default=os.environ.get("CKSTORE_BIN", ".build/release/ckstore"),
                    help="binary or comma-separated binaries to compare (interleaved)")
    ap.add_argument("--work", default=None, help="folder for stores and outputs (default: beside --file)")
    ap.add_argument("--json", default="Tools/bench/results/device.json")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every timed command (root)")
    a = ap.parse_args()

    src = os.path.abspath(a.file)
    size = os.path.getsize(src)
    work = os.path.abspath(a.work or os.path.join(os.path.dirname(src), "device-bench"))
    os.makedirs(work, exist_ok=True)
    bins = [os.path.abspath(b) for b in a.ckstore.split(",")]
    cold = a.cold and drop_caches()
    if a.cold and not cold:
        print("drop_caches is not writable: runs are warm", file=sys.stderr)
    dst = os.path.join(work, "dst")

    def label(i: int) -> str:
        return f"ckstore[{i}]" if len(bins) > 1 else "ckstore"

    put_cmds = {"cp + sync": f"cp {q(src)} {q(dst)} && sync",
                "dd bs=4M conv=fsync": f"dd if={q(src)} of={q(dst)} bs=4M conv=fsync status=none"}
    for i, b in enumerate(bins):
        store = os.path.join(work, f"store{i}")
        put_cmds[f"{label(i)} put"] = (f"rm -rf {q(store)} && {q(b)} --store {q(store)} init >/dev/null && "
                                       f"{q(b)} --store {q(store)} put --quiet --run bench --step 1 {q(src)}")
    samples: dict[str, list[float]] = {k: [] for k in put_cmds}
    get_cmds = {"cat > dst": f"cat {q(src)} > {q(dst)}"}
    for i, b in enumerate(bins):
        store = os.path.join(work, f"store{i}")
        base = f"{q(b)} --store {q(store)} get bench@1"
        get_cmds[f"{label(i)} get -o dst"] = f"{base} -o {q(dst)}"
        get_cmds[f"{label(i)} get -o /dev/null"] = f"{base} -o /dev/null"
        get_cmds[f"{label(i)} get -o - | cat > /dev/null"] = f"{base} -o - | cat > /dev/null"
    samples.update({k: [] for k in get_cmds})

    for r in range(a.runs):
        names = list(put_cmds)
        names = names[r % len(names):] + names[:r % len(names)]
        for n in names:
            if os.path.exists(dst):
                os.unlink(dst)
            samples[n].append(timed(put_cmds[n], cold))
        names = list(get_cmds)
        names = names[r % len(names):] + names[:r % len(names)]
        for n in names:
            if os.path.exists(dst):
                os.unlink(dst)
            samples[n].append(timed(get_cmds[n], cold))
        print(f"run {r + 1}/{a.runs} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    if os.path.exists(dst):
        os.unlink(dst)
    # A last check that get restores the exact bytes.
    for i, b in enumerate(bins):
        store = os.path.join(work, f"store{i}")
        subprocess.run([b, "--store", store, "get", "bench@1", "-o", dst], check=True)
        same = subprocess.run(["cmp", "-s", src, dst]).returncode == 0
        print(f"{label(i)} get byte-exact: {same}", file=sys.stderr)
        os.unlink(dst)

    mb = size / 1e6
    print(f"\n{mb:.1f} MB file, {a.runs} runs, {'cold (drop_caches before each command)' if cold else 'warm page cache'}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| command | median | range | MB/s (median) |")
    print("| --- | --- | --- | --- |")
    for n, xs in samples.items():
        m = statistics.median(xs)
        print(f"| `{n}` | {m:.3f} s | {min(xs):.3f}–{max(xs):.3f} | {mb / m:.0f} |")
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"file": src, "bytes": size, "cold": cold, "binaries": bins, "commands": {**put_cmds, **get_cmds},
                   "samples_s": samples, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
