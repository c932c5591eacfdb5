#!/usr/bin/env python3
"""The language-model demo's report: the table, the plots, and which paper findings held.

    python3 Tools/demo_lm/report.py --high RUN --low RUN --lawa lawa-k6-s20 --ema ema-d0.7 \
        [--swa swa] [--out DIR]

Reads each run's ``val_loss`` metrics (variants raw, LAWA, EMA, SWA) and its ``lr`` metric with
``ckstore ls --run RUN --json``, prints one table per run (step, learning rate, the four
validation losses, raw − LAWA), then checks, from those numbers, the findings of Sanyal et al.
(*Early Weight Averaging meets High Learning Rates for LLM Pre-training*):

1. LAWA beats raw: LAWA's loss is lower at most steps where both exist, and on average.
2. The gain (raw − LAWA) is larger at the high learning rate (mean over the common steps).
3. The gain is largest early and shrinks as the learning rate decays (mean gain over the
   first third of the LAWA steps positive and above that over the last third).
4. LAWA is ahead of EMA and of SWA at the same step (at most steps, and on average).

Findings 1, 3 and 4 are checked for each run (and 4 for each baseline): a finding is
REPRODUCED when every case holds, PARTLY reproduced (naming the cases) when some do.

With ``--out`` it writes ``findings.json`` (every number used) and two plots per run: with
``ckstore plot`` (``val_loss-RUN.svg``: raw and each variant against step, every value), and
``val_loss-RUN-zoom.svg`` (plot_svg.py: the y-axis fitted to the steps that have LAWA, where
the differences are visible).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # the ckstore package (or pip install ./Tools/python)

import ckstore  # noqa: E402
from plot_svg import write_plot  # noqa: E402

METRIC = "val_loss"


def read_metrics(binary: str, store: str | None, run: str) -> dict[str, dict[str, dict[int, float]]]:
    """``{metric: {variant: {step: value}}}`` for ``run``, from ``ckstore ls --run RUN --json``."""
    cmd = [binary] + (["--store", store] if store else []) + ["ls", "--run", run, "--json"]
    listing = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
    out: dict[str, dict[str, dict[int, float]]] = {}
    for s in listing.get("snapshots", []):
        for m in s.get("metrics", []):
            out.setdefault(m["name"], {}).setdefault(m["variant"], {})[s["step"]] = m["value"]
    for m in listing.get("metrics", []):  # metrics at steps without a snapshot, if any
        if "step" in m:
            out.setdefault(m["name"], {}).setdefault(m["variant"], {})[m["step"]] = m["value"]
    return out


def mean(values: list[float]) -> float | None:
    """Arithmetic mean, None for an empty list."""
    return sum(values) / len(values) if values else None


def compare(better: dict[int, float], other: dict[int, float]) -> dict:
    """How often and by how much ``better`` has the lower value at the steps both have."""
    steps = sorted(set(better) & set(other))
    gains = [other[s] - better[s] for s in steps]
    return {"steps": len(steps), "wins": sum(g > 0 for g in gains), "mean_gain": mean(gains),
            "first_step": steps[0] if steps else None, "last_step": steps[-1] if steps else None}


def thirds(raw: dict[int, float], lawa: dict[int, float]) -> dict:
    """Mean raw − LAWA over the first and the last third of the steps that have both."""
    steps = sorted(set(raw) & set(lawa))
    n = len(steps) // 3
    if n == 0:
        return {"early": None, "late": None, "early_steps": [], "late_steps": []}
    early, late = steps[:n], steps[-n:]
    return {"early": mean([raw[s] - lawa[s] for s in early]), "late": mean([raw[s] - lawa[s] for s in late]),
            "early_steps": [early[0], early[-1]], "late_steps": [late[0], late[-1]]}


def print_table(run: str, m: dict, variants: list[tuple[str, str]]) -> None:
    """One row per step: lr, the loss of every variant, raw − LAWA."""
    loss = m.get(METRIC, {})
    lr = m.get("lr", {}).get("raw", {})
    steps = sorted({s for v in loss.values() for s in v})
    header = ["step", "lr"] + [label for label, _ in variants] + ["raw-LAWA"]
    print(f"{run}: validation loss (nats/byte) by step")
    print("  ".join(h.rjust(9) for h in header))

    def cell(v: float | None, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    for s in steps:
        vals = [loss.get(name, {}).get(s) for _, name in variants]
        raw, lawa = vals[0], vals[1]
        row = [str(s), cell(lr.get(s), ".2e")] + [cell(v) for v in vals]
        row.append(cell(raw - lawa if raw is not None and lawa is not None else None, "+.4f"))
        print("  ".join(c.rjust(9) for c in row))
    print()


def _finding(name: str, checks: dict[str, bool], detail: dict, text: str) -> dict:
    """A finding with its per-case checks: ``held`` when every case held, ``status`` in words."""
    held = [case for case, ok in checks.items() if ok]
    if len(held) == len(checks):
        status = "REPRODUCED"
    elif held:
        status = "PARTLY reproduced (held for " + ", ".join(held) + "; not for " + \
            ", ".join(c for c in checks if c not in held) + ")"
    else:
        status = "NOT reproduced"
    return {"finding": name, "held": len(held) == len(checks), "status": status, "checks": checks,
            "detail": detail, "text": text}


def findings(data: dict, high: str, low: str, lawa: str, ema: str, swa: str) -> list[dict]:
    """The four findings, each with ``held`` (bool), ``status``, per-case ``checks`` and numbers."""
    runs = (high, low)
    loss = {run: data[run].get(METRIC, {}) for run in runs}
    raw_vs = {run: compare(loss[run].get(lawa, {}), loss[run].get("raw", {})) for run in runs}
    out = []

    def beats(c: dict) -> bool:
        return c["steps"] > 0 and c["wins"] * 2 > c["steps"] and c["mean_gain"] > 0

    out.append(_finding(
        "LAWA beats raw", {r: beats(raw_vs[r]) for r in runs}, {r: raw_vs[r] for r in runs},
        "; ".join(f"{r}: LAWA lower at {raw_vs[r]['wins']}/{raw_vs[r]['steps']} steps, "
                  f"mean raw-LAWA {_signed(raw_vs[r]['mean_gain'])}" for r in runs)))
    common = sorted(set(loss[high].get(lawa, {})) & set(loss[high].get("raw", {}))
                    & set(loss[low].get(lawa, {})) & set(loss[low].get("raw", {})))
    gain = {r: mean([loss[r]["raw"][s] - loss[r][lawa][s] for s in common]) for r in runs}
    out.append(_finding(
        "the gain is larger at the high learning rate",
        {f"{high} vs {low}": bool(common) and gain[high] > gain[low]}, {"steps": len(common), **gain},
        f"mean raw-LAWA over {len(common)} common steps: {high} {_signed(gain[high])}, {low} {_signed(gain[low])}"))
    th = {r: thirds(loss[r].get("raw", {}), loss[r].get(lawa, {})) for r in runs}
    out.append(_finding(
        "the gain is largest early and shrinks as the learning rate decays",
        {r: th[r]["early"] is not None and th[r]["early"] > 0 and th[r]["early"] > th[r]["late"] for r in runs},
        th,
        "; ".join(f"{r}: first third (steps {_span(th[r]['early_steps'])}) {_signed(th[r]['early'])}, "
                  f"last third (steps {_span(th[r]['late_steps'])}) {_signed(th[r]['late'])}" for r in runs)))
    vs = {r: {name: compare(loss[r].get(lawa, {}), loss[r].get(name, {})) for name in (ema, swa)} for r in runs}
    out.append(_finding(
        "LAWA is ahead of EMA and SWA at the same step",
        {f"{r} vs {name}": beats(vs[r][name]) for r in runs for name in (ema, swa)}, vs,
        "; ".join(f"{r}: LAWA lower than {name} at {vs[r][name]['wins']}/{vs[r][name]['steps']} steps "
                  f"(mean {name}-LAWA {_signed(vs[r][name]['mean_gain'])})" for r in runs for name in (ema, swa))))
    return out


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.4f}"


def _span(steps: list[int]) -> str:
    return f"{steps[0]}-{steps[1]}" if steps else "none"


def main(argv: list[str] | None = None) -> int:
    """Print the tables and the findings, write findings.json and the plots; exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--high", required=True, help="the run at the high learning rate")
    ap.add_argument("--low", required=True, help="the run at the low learning rate")
    ap.add_argument("--lawa", required=True, help="LAWA variant name, e.g. lawa-k6-s20")
    ap.add_argument("--ema", required=True, help="EMA variant name, e.g. ema-d0.7")
    ap.add_argument("--swa", default="swa", help="SWA variant name")
    ap.add_argument("--out", default=None, help="folder for findings.json and the SVG plots")
    ap.add_argument("--store", default=None)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args(argv)
    binary = ckstore.find_binary(args.binary)

    data = {run: read_metrics(binary, args.store, run) for run in (args.high, args.low)}
    variants = [("raw", "raw"), ("LAWA", args.lawa), ("EMA", args.ema), ("SWA", args.swa)]
    print(f"variants: LAWA = {args.lawa}, EMA = {args.ema}, SWA = {args.swa} (every stored snapshot so far)\n")
    for run in (args.high, args.low):
        print_table(run, data[run], variants)
    result = findings(data, args.high, args.low, args.lawa, args.ema, args.swa)
    print("paper findings (Sanyal et al.), checked against the numbers above:")
    for i, f in enumerate(result, 1):
        print(f"  {i}. {f['finding']}: {f['status']}")
        print(f"     {f['text']}")
    print(f"  {sum(f['held'] for f in result)} of {len(result)} findings fully reproduced, "
          f"{sum(not f['held'] and any(f['checks'].values()) for f in result)} partly")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "findings.json").write_text(json.dumps(result, indent=2) + "\n")
        for run in (args.high, args.low):
            path = os.path.join(args.out, f"{METRIC}-{run}.svg")
            cmd = [binary] + (["--store", args.store] if args.store else [])
            cmd += ["plot", "--run", run, "--metric", METRIC, "-o", path,
                    "--title", f"{run}: validation loss, raw vs {args.lawa} vs {args.ema} vs {args.swa}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"report.py: plot for {run} failed: {proc.stderr.strip()}", file=sys.stderr)
                return 1
            print(f"plot: {path}")
            zoom = os.path.join(args.out, f"{METRIC}-{run}-zoom.svg")
            loss = data[run].get(METRIC, {})
            lawa_steps = loss.get(args.lawa, {})
            write_plot(zoom, f"{run}: validation loss (y-axis from step {min(lawa_steps, default=0)})",
                       [(label, loss.get(name, {})) for label, name in variants],
                       y_from=min(lawa_steps) if lawa_steps else None)
            print(f"plot: {zoom}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
