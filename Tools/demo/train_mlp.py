#!/usr/bin/env python3
"""Train the demo MLP student (numpy only) and push a float32 snapshot every NU steps.

    python3 Tools/demo/train_mlp.py --run mlp-lr-high --lr 0.4 [--steps 1500] [--every 50]

Snapshots go through ckstore.CheckpointPusher (background `ckstore put`, one in flight), into the
store given by --store or $CKSTORE_DIR, with the mean training loss of the last NU steps as
the metric train_loss. The last line is the pusher's timing (CheckpointPusher.stats): how long
the training loop was blocked inside push, against how long the background puts took. The
problem is defined in mlp_task.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))  # the ckstore package (or pip install ./Tools/python)

import mlp_task  # noqa: E402
from ckstore import CheckpointPusher  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, push snapshots; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=50, help="snapshot interval NU (steps)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0, help="minibatch order (same for every run)")
    ap.add_argument("--store", default=None, help="store path (default: $CKSTORE_DIR)")
    ap.add_argument("--binary", default=None, help="ckstore binary (default: $CKSTORE_BIN)")
    args = ap.parse_args(argv)

    x, y = mlp_task.training_set()
    params = mlp_task.init_student()
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    rng = np.random.default_rng(args.seed)
    lr, mu = np.float32(args.lr), np.float32(args.momentum)
    n_params = sum(v.size for v in params.values())
    print(f"{args.run}: {n_params:,} parameters, lr {args.lr}, momentum {args.momentum}, batch {args.batch}, "
          f"{args.steps} steps, snapshot every {args.every}", flush=True)

    t0 = time.monotonic()
    recent: list[float] = []
    with CheckpointPusher(args.run, store=args.store, binary=args.binary, interval=args.every) as pusher:
        for step in range(1, args.steps + 1):
            idx = rng.integers(0, len(x), size=args.batch)
            loss, grads = mlp_task.loss_and_grads(params, x[idx], y[idx])
            if not np.isfinite(loss):
                print(f"{args.run}: loss diverged at step {step}", file=sys.stderr)
                return 1
            for k, g in grads.items():  # SGD with (heavy-ball) momentum, in place
                v = velocity[k]
                v *= mu
                v += g
                params[k] -= lr * v
            recent.append(loss)
            if step % args.every == 0:
                pusher.push(step, params, metrics={"train_loss": float(np.mean(recent))})
                if step % (args.every * 10) == 0:
                    print(f"{args.run}: step {step}, train loss {np.mean(recent):.4f}, "
                          f"{time.monotonic() - t0:.1f} s", flush=True)
                recent.clear()
    took = time.monotonic() - t0
    print(f"{args.run}: done, {args.steps} steps in {took:.1f} s", flush=True)
    # How long the training loop was blocked inside push, against what the background puts took.
    st = pusher.stats
    print(f"{args.run} {st}; training loop {took:.1f} s, {100 * st.blocked_total / took:.2f}% of it in push",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
