"""§2 put and get against the device, on one f32 snapshot, interleaved in rotating order.

put rows: `ckstore put` (durable; into a fresh store, created untimed), `cp F dst && sync`,
`dd if=F of=dst bs=4M conv=fsync`. get rows (from a store filled once, untimed): `get -o dst`,
`cat F > dst`, `get -o /dev/null`, `get -o - | cat > /dev/null`. The destination is removed
(untimed) before each command. With --cold the page cache is dropped before every command.
Targets: put ≥ 1.0× both copies; get -o file ≥ 0.9× cat; get to /dev/null and to a pipe ≥ 2 GB/s."""

from __future__ import annotations

import os
import subprocess

from .data import rm
from .measure import log, med, output, q, rotate, span, timed
from .report import Summary
from .store import Store

NAME = "device"
PUT, CP, DD = "ckstore put", "cp F dst && sync", "dd if=F of=dst bs=4M conv=fsync"
GET, CAT, NULL, PIPE = "ckstore get -o dst", "cat F > dst", "ckstore get -o /dev/null", \
    "ckstore get -o - | cat > /dev/null"


def run(ctx) -> dict:
    src = ctx.trajectory("f32", 6)[-1]
    dst = os.path.join(ctx.out, "device.dst")
    put_store = os.path.join(ctx.work, "store-device-put")
    get_store = Store(ctx.ckstore, os.path.join(ctx.work, "store-device-get"))
    get_store.put(src, step=1)
    ref = get_store.cmd("get", "bench@1")
    cmds = {
        PUT: [ctx.ckstore, "--store", put_store, "put", "--quiet", "--run", "bench", "--step", "1", src],
        CP: f"cp {q(src)} {q(dst)} && sync",
        DD: f"dd if={q(src)} of={q(dst)} bs=4M conv=fsync status=none",
        GET: ref + ["-o", dst],
        CAT: f"cat {q(src)} > {q(dst)}",
        NULL: ref + ["-o", "/dev/null"],
        PIPE: " ".join(map(q, ref)) + " -o - | cat > /dev/null",
    }
    raw: dict = {"file": os.path.basename(src), "bytes": os.path.getsize(src), "cold": ctx.cold,
                 "commands": {n: c if isinstance(c, str) else " ".join(c) for n, c in cmds.items()},
                 "samples": {n: [] for n in cmds}}
    for r in range(ctx.runs):
        for group in ((PUT, CP, DD), (GET, CAT, NULL, PIPE)):
            for name in rotate(list(group), r):
                rm(dst)
                if name == PUT:
                    subprocess.run(["rm", "-rf", put_store], check=True)
                    output([ctx.ckstore, "--store", put_store, "init"])
                c = cmds[name]
                raw["samples"][name].append(timed(c, shell=isinstance(c, str), cold=ctx.cold, rss=False))
        log(f"device round {r + 1}/{ctx.runs}: " + ", ".join(
            f"{n.split(' ')[0] if n in (CP, DD, CAT) else n} {raw['samples'][n][-1]['wall_s']:.2f} s"
            for n in (PUT, CP, DD, GET, CAT)))
    rm(dst)
    output(ref + ["-o", dst])
    raw["get_byte_exact"] = subprocess.run(["cmp", "-s", src, dst]).returncode == 0
    raw["stats"] = get_store.stats()
    raw["store_config"] = get_store.config
    rm(dst)
    subprocess.run(["rm", "-rf", put_store])
    get_store.remove()
    return raw


def summarize(raw: dict, s: Summary) -> None:
    mb = raw["bytes"] / 1e6
    g = f"§2 device ({mb:.0f} MB f32 file, {'cold' if raw['cold'] else 'warm'} page cache)"
    rate = {}
    for name, samples in raw["samples"].items():
        xs = [mb / x["wall_s"] for x in samples]
        rate[name] = med(xs)
        base = {PUT: None, CP: PUT, DD: PUT, GET: None, CAT: GET}.get(name)
        note = f"ckstore {rate[base] / rate[name]:.2f}× this" if base and base in rate else ""
        if name == GET:
            note = "byte-exact" if raw.get("get_byte_exact") else "NOT byte-exact"
        s.row(g, name, f"{rate[name]:.0f} MB/s", span(xs, "{:.0f}"), note)
    st = raw.get("stats", {})
    if st:
        flt = raw.get("store_config", {}).get("compression", {}).get("float_filter", "?")
        s.row(g, f"stored / raw (default float_filter {flt})", f"{st.get('compression_ratio', float('nan')):.3f}")
    for base, goal in ((CP, 1.0), (DD, 1.0)):
        x = rate[PUT] / rate[base]
        s.check(f"§2 put vs `{base}`", f"{x:.2f}× ({rate[PUT]:.0f} vs {rate[base]:.0f} MB/s)", f"≥ {goal}×",
                x >= goal)
    x = rate[GET] / rate[CAT]
    s.check("§2 get -o file vs `cat F > dst`", f"{x:.2f}× ({rate[GET]:.0f} vs {rate[CAT]:.0f} MB/s)", "≥ 0.9×",
            x >= 0.9)
    for name in (NULL, PIPE):
        s.check(f"§2 {name}", f"{rate[name]:.0f} MB/s", "≥ 2000 MB/s", rate[name] >= 2000)
