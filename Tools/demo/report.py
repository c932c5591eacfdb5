#!/usr/bin/env python3
"""Print the demo's comparison of raw and LAWA validation loss, and draw the plots.

    python3 Tools/demo/report.py --run mlp-lr-high --run mlp-lr-low [--metric val_loss] [--out DIR]

Reads every run's metrics with `ckstore ls --run RUN --json`, prints one table row per step
(raw and LAWA value for each run, and raw − LAWA: positive means LAWA is better), then the
mean improvement over the early and the late half of the steps where both exist, and writes
`ckstore plot --run RUN --metric METRIC -o OUT/METRIC-RUN.svg` for every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))  # the ckstore package (or pip install ./Tools/python)

from ckstore import find_binary  # noqa: E402


def read_metric(binary: str, store: str | None, run: str, metric: str) -> dict[str, dict[int, float]]:
    """``{variant: {step: value}}`` of ``metric`` for ``run``, from `ckstore ls --json`."""
    cmd = [binary] + (["--store", store] if store else []) + ["ls", "--run", run, "--json"]
    listing = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
    out: dict[str, dict[int, float]] = {}
    for s in listing.get("snapshots", []):  # metrics attached to snapshots
        for m in s.get("metrics", []):
            if m["name"] == metric:
                out.setdefault(m["variant"], {})[s["step"]] = m["value"]
    for m in listing.get("metrics", []):  # all metrics (those with a "step" field)
        if m["name"] == metric and "step" in m:
            out.setdefault(m["variant"], {})[m["step"]] = m["value"]
    return out


def summarize(raw: dict[int, float], avg: dict[int, float]) -> dict[str, float]:
    """Mean (raw − average) and mean relative improvement over the early and late halves."""
    steps = sorted(set(raw) & set(avg))
    half = len(steps) // 2
    result: dict[str, float] = {"n": len(steps)}
    for label, part in (("early", steps[:half]), ("late", steps[half:]), ("all", steps)):
        if part:
            result[f"{label}_abs"] = sum(raw[s] - avg[s] for s in part) / len(part)
            result[f"{label}_rel"] = 100 * sum((raw[s] - avg[s]) / raw[s] for s in part) / len(part)
            result[f"{label}_wins"] = sum(avg[s] < raw[s] for s in part) / len(part)
            result[f"{label}_range"] = (part[0], part[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the table and summary, write the SVG plots; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="a run (repeat for several)")
    ap.add_argument("--metric", default="val_loss")
    ap.add_argument("--out", default=None, help="folder for the SVG plots (none when omitted)")
    ap.add_argument("--store", default=None)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args(argv)
    binary = find_binary(args.binary)

    data = {run: read_metric(binary, args.store, run, args.metric) for run in args.run}
    lawa_variant = {run: next((v for v in sorted(d) if v.startswith("lawa")), None) for run, d in data.items()}
    steps = sorted({s for d in data.values() for v in d.values() for s in v})

    header = ["step"]
    for run in args.run:
        header += [f"{run} raw", f"{lawa_variant[run] or 'lawa'}", "raw-lawa"]
    widths = [max(6, len(h)) for h in header]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))

    def cell(v: float | None, signed: bool = False) -> str:
        return "-" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")

    for s in steps:
        row = [str(s)]
        for run in args.run:
            raw = data[run].get("raw", {}).get(s)
            avg = data[run].get(lawa_variant[run], {}).get(s) if lawa_variant[run] else None
            row += [cell(raw), cell(avg), cell(raw - avg if raw is not None and avg is not None else None, True)]
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))

    print()
    print(f"mean improvement raw - LAWA in {args.metric} (positive: LAWA better), early and late half of the steps:")
    for run in args.run:
        if not lawa_variant[run]:
            print(f"  {run}: no LAWA values recorded")
            continue
        r = summarize(data[run].get("raw", {}), data[run][lawa_variant[run]])
        if not r["n"]:
            print(f"  {run}: no step has both a raw and a LAWA value")
            continue
        parts = []
        for label in ("early", "late", "all"):
            if f"{label}_abs" in r:
                a, b = r[f"{label}_range"]
                parts.append(f"{label} {a}-{b}: {r[f'{label}_abs']:+.4f} ({r[f'{label}_rel']:+.1f}%)")
        print(f"  {run:<{max(map(len, args.run))}}  " + "   ".join(parts)
              + f"   LAWA better at {round(r['all_wins'] * r['n'])}/{r['n']} steps")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for run in args.run:
            path = os.path.join(args.out, f"{args.metric}-{run}.svg")
            cmd = [binary] + (["--store", args.store] if args.store else [])
            cmd += ["plot", "--run", run, "--metric", args.metric, "-o", path]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"report.py: plot for {run} failed: {proc.stderr.strip()}", file=sys.stderr)
                return 1
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
