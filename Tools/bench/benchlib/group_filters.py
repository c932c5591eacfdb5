"""§5 stored size per compression setting: stored/raw, put and get speed, f32 and bf16.

--filters lists the settings (comma separated). Each is a float_filter value (none,
byteshuffle, bitshuffle, hybrid, or a new one), optionally followed by `+key=value` pairs set
in the config's "compression" object (e.g. `hybrid+exponent_codec=huffman`; values are read as
JSON when they parse, else as strings). A setting the binary rejects (init or the first put
fails) is skipped with a note naming the error. Per round, in rotating order, each setting gets a
fresh store: the six snapshots are put (timed), then the newest is read back with `get -o
/dev/null`: wall-clock MB/s, and MB per CPU-second (user + system; the per-core decode speed,
process start-up included)."""

from __future__ import annotations

import json
import os

from .measure import log, med, rotate, span, timed
from .report import Summary
from .store import Store

NAME = "filters"
TARGETS = {"f32": 0.84, "bf16": 0.68}   # issue 13 §5 (stated for a real training run's data)


def parse_setting(text: str) -> dict:
    """'hybrid+exponent_codec=huffman' → {'float_filter': 'hybrid', 'exponent_codec': 'huffman'}."""
    head, *pairs = text.split("+")
    out: dict = {"float_filter": head} if head else {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _store(ctx, setting: str, dtype: str) -> Store:
    store = Store(ctx.ckstore, os.path.join(ctx.work, f"store-filter-{dtype}"))
    cfg = store.config
    cfg.setdefault("compression", {}).update(parse_setting(setting))
    with open(os.path.join(store.path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return store


def run(ctx) -> dict:
    raw: dict = {"settings": ctx.filters, "rejected": {}, "results": {}}
    data = {"f32": ctx.trajectory("f32", 6), "bf16": ctx.trajectory("bf16", 6)}
    settings = list(ctx.filters)
    for r in range(ctx.runs):
        for setting in rotate(settings, r):
            if setting in raw["rejected"]:
                continue
            for dtype, files in data.items():
                store = _store(ctx, setting, dtype)
                puts = []
                for f in files:
                    s = store.put(f, check=False, rss=False)
                    if s["exit"] != 0:
                        tail = (s.get("stderr_tail") or s["failure"]).strip().splitlines()
                        raw["rejected"][setting] = tail[-1] if tail else s["failure"]
                        log(f"filters: {setting!r} rejected by the binary: {raw['rejected'][setting]}")
                        break
                    s["bytes"] = os.path.getsize(f)
                    puts.append(s)
                if setting in raw["rejected"]:
                    store.remove()
                    break
                last = os.path.basename(files[-1])[4:10]
                get = timed(store.cmd("get", f"bench@{int(last)}", "-o", "/dev/null"))
                get["bytes"] = os.path.getsize(files[-1])
                res = raw["results"].setdefault(f"{dtype} {setting}", {"put": [], "get": [], "stats": None})
                res["put"].append(puts)
                res["get"].append(get)
                res["stats"] = store.stats()
                res["config"] = store.config.get("compression")
                log(f"filters round {r + 1}/{ctx.runs}: {dtype} {setting}: stored/raw "
                    f"{res['stats'].get('compression_ratio', float('nan')):.3f}")
                store.remove()
    for setting in raw["rejected"]:
        for dtype in data:
            raw["results"].pop(f"{dtype} {setting}", None)
    return raw


def summarize(raw: dict, s: Summary) -> None:
    g = "§5 stored size per compression setting (6 generated snapshots)"
    best: dict = {}
    for key, res in raw["results"].items():
        dtype = key.split(" ", 1)[0]
        ratio = res["stats"]["compression_ratio"]
        put = [sum(x["bytes"] for x in run) / 1e6 / sum(x["wall_s"] for x in run) for run in res["put"]]
        get = [x["bytes"] / 1e6 / x["wall_s"] for x in res["get"]]
        per_cpu = med([x["bytes"] / 1e6 / x["cpu_s"] for x in res["get"] if x.get("cpu_s")])
        s.row(g, f"{key}: stored / raw", f"{ratio:.3f}", "",
              f"put {med(put):.0f} MB/s ({span(put, '{:.0f}') or 'one round'}); get -o /dev/null "
              f"{med(get):.0f} MB/s ({span(get, '{:.0f}') or 'one round'}), {per_cpu:.0f} MB per CPU-second")
        if dtype not in best or ratio < best[dtype][0]:
            best[dtype] = (ratio, key.split(" ", 1)[1], per_cpu)
    for setting, why in raw["rejected"].items():
        s.note(g, f"`{setting}` skipped: the binary rejects it ({why[:200]})")
    for dtype, (ratio, setting, per_cpu) in best.items():
        goal = TARGETS[dtype]
        s.check(f"§5 {dtype}: best stored/raw (`{setting}`; generated data, not a training run)",
                f"{ratio:.3f}", f"≤ {goal}", ratio <= goal)
        s.check(f"§5 {dtype}: decode of `{setting}` per core (get -o /dev/null, bytes / CPU time)",
                f"{per_cpu:.0f} MB/s", "≥ 1500 MB/s", per_cpu >= 1500)
