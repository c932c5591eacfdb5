"""§4 (opt-in, --large): LAWA k=6 over six GPT-2-large snapshots (774M parameters, 3.1 GB f32
each): ckstore's default command and --no-cache against numpy_lawa.py, wall time and peak RSS;
a baseline that fails (MemoryError, OOM kill) is recorded with how it failed.

Needs about 6 × 3.1 GB of inputs + the store (~16 GB) + two 3.1 GB outputs on the work disk, and
for numpy about 4× one snapshot of memory (a float64 accumulator plus the loaded file). The
inputs, store and outputs are deleted afterwards unless --keep is given."""

from __future__ import annotations

import os
import subprocess
import sys

from .data import STRIDE, step_of
from .env import HERE
from .measure import log, med, rotate, span, timed
from .report import Summary, mib
from .store import Store, numpy_lawa_cmd

NAME = "large"
K = 6
MODEL = "gpt2-large"


def _generate(folder: str, seed: int, scale: float) -> list[str]:
    """The six inputs, generated in a child process so that this process stays small (its RSS
    would otherwise count against the memory the baseline needs)."""
    paths = [os.path.join(folder, f"step{k * STRIDE:06d}.safetensors") for k in range(K)]
    if all(os.path.exists(p) for p in paths):
        log(f"reusing {folder}")
        return paths
    log(f"generating {K} {MODEL} f32 snapshots in {folder}")
    subprocess.run([sys.executable, os.path.join(HERE, "generate.py"), "--out", folder, "--steps", str(K),
                    "--dtype", "f32", "--model", MODEL, "--seed", str(seed), "--interval", str(STRIDE),
                    "--scale", str(scale), "--quiet"],
                   check=True)
    return paths


def run(ctx) -> dict:
    """Generate, put, then ctx.large_runs interleaved rounds of the three commands."""
    folder = os.path.join(ctx.work, "data", f"{MODEL}-f32-{ctx.large_scale}")
    files = _generate(folder, ctx.seed, ctx.large_scale)
    raw: dict = {"model": MODEL, "scale": ctx.large_scale, "k": K, "file_bytes": os.path.getsize(files[-1]), "samples": {}}
    store = Store(ctx.ckstore, os.path.join(ctx.work, "store-large"))
    raw["store_config"] = store.config
    raw["put"] = [store.put(f) for f in files]
    raw["stats"] = store.stats()
    at = step_of(files[-1])
    ck_out, np_out = os.path.join(ctx.out, "large-ck.safetensors"), os.path.join(ctx.out, "large-np.safetensors")
    commands = {
        "ckstore default command (first request)": (store.lawa_cmd(K, at, ck_out), True),
        "ckstore --no-cache": (store.lawa_cmd(K, at, ck_out, "--no-cache"), False),
        "numpy_lawa.py": (numpy_lawa_cmd(files, np_out), False),
    }
    raw["commands"] = {n: c for n, (c, _) in commands.items()}
    try:
        for r in range(ctx.large_runs):
            for name in rotate(list(commands), r):
                cmd, first = commands[name]
                if first:
                    store.drop_derived()
                s = timed(cmd, check=False)
                raw["samples"].setdefault(name, []).append(s)
                log(f"large {r + 1}/{ctx.large_runs}: {name}: {s['wall_s']:.1f} s, "
                    f"{mib(s['maxrss_kb'])}{', ' + s['failure'] if s['exit'] else ''}")
        if os.path.exists(ck_out) and os.path.exists(np_out):
            from .data import same_tensors
            raw["check"] = same_tensors(ck_out, np_out)
    finally:
        for p in (ck_out, np_out):
            if os.path.exists(p):
                os.remove(p)
        if not ctx.keep:
            store.remove()
            subprocess.run(["rm", "-rf", folder])
    return raw


def summarize(raw: dict, s: Summary) -> None:
    """Rows: time and peak RSS of each command (or how it failed); target: ≥ 5× numpy."""
    scale = "" if raw.get("scale", 1) == 1 else f", scale {raw['scale']}"
    g = f"GPT-2-large LAWA k={K} (6 × {raw['file_bytes'] / 1e9:.2f} GB f32{scale})"
    put = raw.get("put", [])
    if put:
        total = sum(x["wall_s"] for x in put)
        s.row(g, "put of the 6 snapshots", f"{raw['file_bytes'] * len(put) / 1e6 / total:.0f} MB/s", "",
              f"stored/raw {raw['stats'].get('compression_ratio', float('nan')):.3f}")
    walls = {}
    for name, samples in raw["samples"].items():
        ok = [x for x in samples if x["exit"] == 0]
        failed = [x for x in samples if x["exit"] != 0]
        rss = max((x["maxrss_kb"] or 0) for x in samples)
        note = f"peak RSS {mib(rss)}"
        if failed:
            last_err = failed[-1].get("stderr_tail", "").strip().splitlines()[-1:] or [""]
            note += f"; {len(failed)}/{len(samples)} failed: {failed[-1]['failure']} after " \
                    f"{failed[-1]['wall_s']:.0f} s ({last_err[0][:120]})"
        if ok:
            walls[name] = med([x["wall_s"] for x in ok])
            s.row(g, name, f"{walls[name]:.1f} s", span([x["wall_s"] for x in ok], "{:.1f}"), note)
        else:
            s.row(g, name, "failed", "", note)
    chk = raw.get("check")
    if chk:
        s.row(g, "ckstore output vs numpy_lawa.py", "identical" if chk["identical"] else "differs", "",
              "" if chk["identical"] else f"{chk.get('tensors_differing')} tensors, max |Δ| "
                                          f"{chk.get('max_abs_diff', 0):.3g}")
    npw = walls.get("numpy_lawa.py")
    for name in ("ckstore default command (first request)", "ckstore --no-cache"):
        if name in walls and npw:
            x = npw / walls[name]
            s.check(f"GPT-2-large: {name} vs numpy", f"{x:.2f}× ({walls[name]:.1f} s vs {npw:.1f} s)", "≥ 5×",
                    x >= 5)
        elif name in walls:
            s.check(f"GPT-2-large: {name} vs numpy", "numpy failed: " +
                    ", ".join(x.get("failure", "") for x in raw["samples"].get("numpy_lawa.py", [])), "≥ 5×", True)
    ck_rss = [x["maxrss_kb"] for n, v in raw["samples"].items() if n.startswith("ckstore") for x in v
              if x["maxrss_kb"]]
    if ck_rss:
        s.check("GPT-2-large: ckstore peak RSS", mib(max(ck_rss)), "≤ 150 MB", max(ck_rss) * 1024 <= 150e6)
