#!/usr/bin/env python3
"""How long does a push block the training loop, against the training step itself?

    python3 Tools/python/bench/push_blocking.py [--params 10] [--steps 60] [--every 10] [--store DIR]

Trains an MLP of about --params million float32 parameters with AdamW on the CPU (batch 64),
pushing {"model", "optimizer"} every --every steps through ckstore.CheckpointPusher (one push in
flight). Prints the median step time without a push, the median time the caller spent inside
``maybe_push`` on push steps (the host copy, plus any wait for the previous put), the same for a
model-only push, and the pusher's stats. The binary is $CKSTORE_BIN (or PATH).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import ckstore  # noqa: E402


def main() -> int:
    """Run the measurement; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=float, default=10.0, help="millions of parameters (about)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()

    width = 1024
    layers = max(1, round(args.params * 1e6 / (width * width + width)))
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[m for _ in range(layers) for m in (torch.nn.Linear(width, width), torch.nn.GELU())])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = sum(p.numel() for p in model.parameters())
    store = args.store or tempfile.mkdtemp(prefix="ckstore-bench-")
    x = torch.randn(64, width)

    def step_once() -> None:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step_once()  # warm-up (allocates the optimizer state)

    results = {}
    for label, state_fn in (("model+optimizer", lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()}),
                            ("model only", model.state_dict)):
        steps, blocked = [], []
        with ckstore.CheckpointPusher(f"bench-{label.replace(' ', '-').replace('+', '-')}", store=store,
                                      interval=args.every) as pusher:
            for step in range(1, args.steps + 1):
                t0 = time.perf_counter()
                step_once()
                t1 = time.perf_counter()
                pushed = pusher.maybe_push(step, state_fn)
                t2 = time.perf_counter()
                if pushed is None:
                    steps.append(t1 - t0)
                else:
                    blocked.append(t2 - t1)
        results[label] = (statistics.median(steps), statistics.median(blocked), pusher.stats)
    print(f"model: {n / 1e6:.1f}M float32 parameters ({layers} x Linear({width},{width})), batch 64, AdamW, "
          f"{args.steps} steps, push every {args.every}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, (step_s, blocked_s, stats) in results.items():
        print(f"{label}: median step {step_s * 1e3:.1f} ms; median push blocking {blocked_s * 1e3:.1f} ms "
              f"({blocked_s / step_s:.0%} of a step); {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
