"""Tiny snapshots: ls/show/get latency and put time with 10, 100 and 1000 (--tiny-sizes)
snapshots in a store.

One store per size, filled with the same sequence of ~4 KB files (step 500 first, so the probe
exists in every store); the queries then alternate between the stores, max(--tiny-rounds,
3·runs) rounds.
Target: show and get of one snapshot stay flat (≤ 1.5× from 10 to 1000 snapshots)."""

from __future__ import annotations

import os

from .data import generate
from .measure import log, med, timed
from .report import Summary
from .store import Store

NAME = "tiny"
PROBE = 500


def run(ctx) -> dict:
    import numpy as np
    sizes = ctx.tiny_sizes
    raw: dict = {"sizes": list(sizes), "queries": {}, "put_wall_s": {}}
    steps = [PROBE] + [s for s in range(max(sizes)) if s != PROBE]
    tiny = os.path.join(ctx.work, "tiny.safetensors")
    stores = {}
    for n in sizes:
        log(f"tiny store: {n} puts")
        store = stores[n] = Store(ctx.ckstore, os.path.join(ctx.work, f"store-tiny-{n}"))
        rng = np.random.default_rng(ctx.seed + 1)
        times = []
        for step in steps[:n]:
            w = (rng.standard_normal((32, 32)) * 0.02).astype(np.float32)
            b = (rng.standard_normal(32) * 0.02).astype(np.float32)
            generate.write_safetensors(tiny, [("w", "F32", w), ("b", "F32", b)], {"step": str(step)})
            times.append(store.put(tiny, run="tiny", step=step, rss=False)["wall_s"])
        raw["put_wall_s"][str(n)] = times
    raw["file_bytes"] = os.path.getsize(tiny)

    def queries(st):
        return {
            "ls --run R --json": st.cmd("ls", "--run", "tiny", "--json"),
            f"show R@{PROBE}": st.cmd("show", f"tiny@{PROBE}"),
            f"get R@{PROBE} -o /dev/null": st.cmd("get", f"tiny@{PROBE}", "-o", "/dev/null"),
            "ls": st.cmd("ls"),
        }
    reps = max(ctx.tiny_rounds, 3 * ctx.runs)
    log(f"tiny stores: {reps} rounds of queries")
    for _ in range(reps):
        for n, st in stores.items():
            for name, cmd in queries(st).items():
                s = timed(cmd, sync_first=False, rss=False)
                raw["queries"].setdefault(name, {}).setdefault(str(n), []).append(s["wall_s"])
    for st in stores.values():
        st.remove()
    os.remove(tiny)
    return raw


def summarize(raw: dict, s: Summary) -> None:
    sizes = raw["sizes"]
    g = f"tiny snapshots ({' / '.join(map(str, sizes))} in store)"
    lat = {}
    for q, per in raw["queries"].items():
        vals = [med([t * 1000 for t in per[str(n)]]) for n in sizes]
        lat[q] = vals
        s.row(g, q, " / ".join(f"{v:.1f}" for v in vals) + " ms", "",
              f"{vals[-1] / vals[0]:.2f}× from {sizes[0]} to {sizes[-1]}")
    puts = [med([t * 1000 for t in raw["put_wall_s"][str(n)][-10:]]) for n in sizes]
    s.row(g, "put (median of the last 10 puts)", " / ".join(f"{v:.1f}" for v in puts) + " ms", "",
          f"{raw['file_bytes']} B file")
    for q in (f"show R@{PROBE}", f"get R@{PROBE} -o /dev/null"):
        if q in lat:
            x = lat[q][-1] / lat[q][0]
            s.check(f"tiny: {q} latency @{sizes[-1]} / @{sizes[0]}", f"{x:.2f}× ({lat[q][-1]:.1f} ms)",
                    "flat (≤ 1.5×)", x <= 1.5)
