"""§3 a 15-pair (k, ν) sweep at one step against a single LAWA of the largest k.

The sweep is `sweep --lawa k=2,4,6,8,12 --stride 250,500,1000 --at S`: 24 distinct inputs
(S − j·250, S − j·500, S − j·1000 for j < 12). Generated snapshots (seeded) are stored under
those step numbers, oldest first. Rows, interleaved in rotating order, the derived cache dropped
(`gc`) before each sweep that caches:
  single    get --lawa k=12,stride=1000 --at S --no-cache -o FILE  (the baseline)
  exec      sweep … --exec true                (15 results cached, 15 files written for CMD)
  nocache   sweep … --no-cache --exec true     (15 files written, nothing cached)
  default   sweep …                            (the default: 15 results cached, no CMD)
CMD is `true`, so the times exclude evaluation. Target: each sweep ≤ 4× single."""

from __future__ import annotations

import os
import subprocess

from .measure import log, med, output, rotate, span, timed
from .report import Summary, mib
from .store import Store

NAME = "sweep"
KS = (2, 4, 6, 8, 12)
STRIDES = (250, 500, 1000)
AT = 11_000
LABELS = {
    "single": "get --lawa k=12,stride=1000 --no-cache (the baseline)",
    "exec": "sweep --exec true (cached + files)",
    "nocache": "sweep --no-cache --exec true (files only)",
    "default": "sweep (default: cached only, no CMD)",
}


def sweep_steps(at: int = AT) -> list[int]:
    """The distinct input steps of the sweep at `at`, ascending."""
    return sorted({at - j * nu for nu in STRIDES for j in range(max(KS)) if at - j * nu >= 0})


def run(ctx) -> dict:
    steps = sweep_steps()
    files = ctx.trajectory("f32", len(steps), ctx.sweep_scale)
    store = Store(ctx.ckstore, os.path.join(ctx.work, "store-sweep"))
    for path, step in zip(files, steps):
        store.put(path, step=step)
    single_out = os.path.join(ctx.out, "single.safetensors")
    sweep = store.cmd("sweep", "--quiet", "--run", "bench", "--lawa", "k=" + ",".join(map(str, KS)),
                      "--stride", ",".join(map(str, STRIDES)), "--at", str(AT))
    single = store.cmd("get", "--quiet", "--run", "bench", "--lawa", f"k={max(KS)},stride=1000", "--at", str(AT),
                       "--no-cache", "-o", single_out)
    commands = {"single": (single, False), "exec": (sweep + ["--exec", "true"], True),
                "nocache": (sweep + ["--no-cache", "--exec", "true"], False), "default": (sweep, True)}
    samples: dict[str, list] = {name: [] for name in commands}
    tmp = os.path.join(ctx.work, "sweep-tmp")
    os.makedirs(tmp, exist_ok=True)
    env_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = tmp   # where the sweep writes the files it hands to CMD
    try:
        for i in range(ctx.runs):
            for name in rotate(list(commands), i):
                cmd, drops_cache = commands[name]
                if drops_cache:
                    output(store.cmd("gc"))
                samples[name].append(timed(cmd))
            log(f"sweep round {i + 1}/{ctx.runs}: " +
                ", ".join(f"{n} {samples[n][-1]['wall_s']:.2f} s" for n in commands))
    finally:
        if env_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env_tmp
    # The cached sweep's k=12, ν=1000 result must be the single query's bytes.
    check = os.path.join(ctx.out, "check.safetensors")
    output(store.cmd("get", "--quiet", "--run", "bench", "--lawa", "k=12,stride=1000", "--at", str(AT), "-o", check))
    identical = subprocess.run(["cmp", "-s", check, single_out]).returncode == 0
    result = {"samples": samples, "inputs": len(steps), "pairs": len(KS) * len(STRIDES),
              "file_bytes": os.path.getsize(files[-1]), "identical_k12": identical,
              "commands": {n: c for n, (c, _) in commands.items()}}
    for p in (check, single_out):
        os.remove(p)
    store.remove()
    return result


def rows(result: dict) -> list[list[str]]:
    """measurement, median, range, ratio to single, peak RSS, CPU time (user + sys) and its ratio."""
    base = med([x["wall_s"] for x in result["samples"]["single"]])
    base_cpu = med([x.get("cpu_s") for x in result["samples"]["single"]])
    out = []
    for name, label in LABELS.items():
        xs = result["samples"][name]
        walls = [x["wall_s"] for x in xs]
        cpu = med([x.get("cpu_s") for x in xs])
        out.append([name, label, f"{med(walls):.2f} s", span(walls), f"{med(walls) / base:.2f}×",
                    mib(max((x["maxrss_kb"] or 0) for x in xs)), f"{cpu:.2f} s ({cpu / base_cpu:.2f}×)"])
    return out


def summarize(result: dict, s: Summary) -> None:
    g = f"§3 sweep ({result['pairs']} pairs, {result['inputs']} × {result['file_bytes'] / 1e6:.0f} MB f32 inputs)"
    for name, label, m, rng, ratio, rss, cpu in rows(result):
        s.row(g, label, m, rng, f"{ratio} single; peak RSS {rss}; CPU {cpu}")
    s.row(g, "k=12, ν=1000 from the sweep's cache vs the single query",
          "identical" if result["identical_k12"] else "differs")
    base = med([x["wall_s"] for x in result["samples"]["single"]])
    for name in ("nocache", "exec", "default"):
        x = med([y["wall_s"] for y in result["samples"][name]]) / base
        s.check(f"§3 {LABELS[name]} vs one LAWA k=12 --no-cache", f"{x:.2f}×", "≤ 4×", x <= 4)
