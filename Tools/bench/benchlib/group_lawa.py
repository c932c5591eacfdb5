"""§1 the default command: `get --lawa k=6,stride=1000 --at S -o out` as a user types it.

Per dtype (f32, bf16), one store with the store's default config (recorded: its cache_policy
decides what the first request does) and six snapshots. Each round runs, in a rotating order:
  first request   derived cache and request log dropped (`gc`), then the default command;
                  followed at once by the same command twice more ("second request" and
                  "third request": with second-hit the second one caches, the third reads
                  the cache; with always the second already reads it)
  --no-cache      the same query with --no-cache
  numpy_lawa.py   the reference script on the six files
With --cache-policies P,… each round also runs the first/second/third request block with
`cache_policy` set to each P in config.json (rows "cache_policy P: …"; the store's own config is
restored after each block; a policy the binary rejects is skipped with a note).
Targets: first request within 10% of --no-cache; numpy ≥ 5× slower; peak RSS ≤ 150 MB."""

from __future__ import annotations

import os

from .data import rm, same_tensors, step_of
from .measure import CommandFailed, log, med, rotate, span, timed
from .report import Summary, mib
from .store import Store, numpy_lawa_cmd

NAME = "lawa"
K = 6
FIRST, SECOND, THIRD = "default command, first request", "default command, second request", \
    "default command, third request"
NOCACHE, NUMPY = "--no-cache", "numpy_lawa.py"


def run(ctx) -> dict:
    raw: dict = {}
    for dtype in ("f32", "bf16"):
        files = ctx.trajectory(dtype, K)
        store = Store(ctx.ckstore, os.path.join(ctx.work, f"store-lawa-{dtype}"))
        for f in files:
            store.put(f)
        at = step_of(files[-1])
        ck, npo = os.path.join(ctx.out, "lawa-ck.safetensors"), os.path.join(ctx.out, "lawa-np.safetensors")
        default = store.lawa_cmd(K, at, ck)
        d = raw[dtype] = {"store_config": store.config, "file_bytes": os.path.getsize(files[-1]),
                          "commands": {"default": default, NOCACHE: default + ["--no-cache"],
                                       NUMPY: numpy_lawa_cmd(files, npo)},
                          "samples": {n: [] for n in (FIRST, SECOND, THIRD, NOCACHE, NUMPY)}}
        d["rejected_policies"] = {}
        config_text = open(os.path.join(store.path, "config.json")).read()
        for r in range(ctx.runs):
            for block in rotate(["first", NOCACHE, NUMPY] + [f"policy {p}" for p in ctx.cache_policies], r):
                if block == "first":
                    store.drop_derived()
                    for name in (FIRST, SECOND, THIRD):
                        d["samples"][name].append(timed(default))
                elif block.startswith("policy "):
                    _policy_block(store, block.split(" ", 1)[1], default, d, config_text)
                elif block == NOCACHE:
                    d["samples"][NOCACHE].append(timed(default + ["--no-cache"]))
                else:
                    d["samples"][NUMPY].append(timed(numpy_lawa_cmd(files, npo)))
            log(f"lawa {dtype} round {r + 1}/{ctx.runs}: first "
                f"{d['samples'][FIRST][-1]['wall_s']:.2f} s, --no-cache {d['samples'][NOCACHE][-1]['wall_s']:.2f} s, "
                f"numpy {d['samples'][NUMPY][-1]['wall_s']:.2f} s")
        d["check"] = same_tensors(ck, npo)
        d["stats"] = store.stats()
        rm(ck, npo)
        if not ctx.keep:
            store.remove()
    return raw


def _policy_block(store: Store, policy: str, default: list[str], d: dict, config_text: str) -> None:
    """First, second and third request with cache_policy = policy; the config is restored after."""
    if policy in d["rejected_policies"]:
        return
    store.configure(cache_policy=policy)
    try:
        try:
            store.drop_derived()   # gc opens the store: a rejected config.json fails here
        except CommandFailed as e:
            msg = str(e).strip()
            d["rejected_policies"][policy] = msg[msg.find("ckstore: error:"):] if "ckstore: error:" in msg else msg
            return
        for label in ("first", "second", "third"):
            x = timed(default, check=False)
            if x["exit"] != 0:
                tail = (x.get("stderr_tail") or x["failure"]).strip().splitlines()
                d["rejected_policies"][policy] = tail[-1] if tail else x["failure"]
                for other in ("first", "second", "third"):
                    d["samples"].pop(f"cache_policy {policy}: {other} request", None)
                return
            d["samples"].setdefault(f"cache_policy {policy}: {label} request", []).append(x)
    finally:
        with open(os.path.join(store.path, "config.json"), "w") as f:
            f.write(config_text)


def summarize(raw: dict, s: Summary) -> None:
    for dtype, d in raw.items():
        policy = d["store_config"].get("cache_policy", "binary default")
        g = f"§1 LAWA k={K} {dtype} (6 × {d['file_bytes'] / 1e6:.0f} MB; cache_policy {policy})"
        walls, rss = {}, {}
        for name, samples in d["samples"].items():
            w = [x["wall_s"] for x in samples]
            walls[name] = med(w)
            rss[name] = max((x["maxrss_kb"] or 0) for x in samples)
            ratio = walls[name] / med([x["wall_s"] for x in d["samples"][NOCACHE]])
            s.row(g, name, f"{walls[name]:.2f} s", span(w), f"{ratio:.2f}× --no-cache; peak RSS {mib(rss[name])}")
        for policy, why in d.get("rejected_policies", {}).items():
            s.note(g, f"cache_policy `{policy}` skipped: the binary rejects it ({why[:200]})")
        chk = d.get("check", {})
        s.row(g, "ckstore output vs numpy_lawa.py", "identical" if chk.get("identical") else "differs", "",
              "" if chk.get("identical") else f"{chk.get('tensors_differing')} tensors, max |Δ| "
                                              f"{chk.get('max_abs_diff', float('nan')):.3g}")
        first, nc, npw = walls[FIRST], walls[NOCACHE], walls[NUMPY]
        s.check(f"§1 {dtype}: default command (first request) vs --no-cache",
                f"{first / nc:.2f}× ({first:.2f} s vs {nc:.2f} s)", "≤ 1.10×", first <= 1.10 * nc)
        s.check(f"§1 {dtype}: numpy / default command (first request)",
                f"{npw / first:.2f}× ({npw:.2f} s vs {first:.2f} s)", "≥ 5×", npw >= 5 * first)
        s.check(f"§1 {dtype}: numpy / --no-cache", f"{npw / nc:.2f}×", "≥ 5× (the floor's share)", npw >= 5 * nc)
        peak = max(v for n, v in rss.items() if n != NUMPY)
        s.check(f"§1 {dtype}: ckstore peak RSS (any row)", mib(peak), "≤ 150 MB", peak * 1024 <= 150e6)
        third = walls[THIRD]
        s.check(f"§1 {dtype}: repeat served from the cache (third request)",
                f"{third:.2f} s ({nc / third:.1f}× faster than --no-cache)", "faster than --no-cache", third < nc)
