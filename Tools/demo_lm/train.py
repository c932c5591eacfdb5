#!/usr/bin/env python3
"""Train the demo GPT on the corpus bytes and push a snapshot every NU steps into ckstore.

    python3 Tools/demo_lm/train.py --run lm-lr-high --lr 6e-3 --data DIR [--steps 600] [--every 20] …

AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping at 1.0), a linear
warm-up over ``--warmup`` steps, then cosine decay to ``--min-lr-ratio`` × the peak at the
last step. The batches come from a torch.Generator seeded with ``--seed``, so runs at two
learning rates see the same bytes in the same order; weights are initialized from the same
seed; ``torch.use_deterministic_algorithms(True)`` and a fixed thread count make a rerun
give the same numbers.

Every NU steps (``ckstore.CheckpointPusher.maybe_push``) the model's state dict goes to the
store (``--store`` or $CKSTORE_DIR) in the background, with the mean training loss since the
last push and the current learning rate as metrics. At the end it prints, and writes to
``--summary`` as JSON, the median training step time and how long the training loop was
blocked inside push (the host copy), against how long the background ``ckstore put`` took.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # the ckstore package (or pip install ./Tools/python)

import ckstore  # noqa: E402
from model import GPT, Config  # noqa: E402


def lr_at(step: int, peak: float, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning rate at ``step`` (1-based): linear warm-up to ``peak``, cosine to min_ratio·peak."""
    if step <= warmup:
        return peak * step / max(warmup, 1)
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--lr", type=float, required=True, help="peak learning rate")
    ap.add_argument("--data", required=True, help="folder with train.bin (corpus.py)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=20, help="snapshot interval NU (steps)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of --steps)")
    ap.add_argument("--min-lr-ratio", type=float, default=0.1, help="final LR as a fraction of the peak")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--width", type=int, default=Config.width)
    ap.add_argument("--layers", type=int, default=Config.layers)
    ap.add_argument("--heads", type=int, default=Config.heads)
    ap.add_argument("--context", type=int, default=Config.context)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--store", default=None, help="store path (default: $CKSTORE_DIR)")
    ap.add_argument("--binary", default=None, help="ckstore binary (default: $CKSTORE_BIN)")
    ap.add_argument("--summary", default=None, help="write the timing summary here (JSON)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, push snapshots, print the timing; returns the exit status."""
    args = parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    cfg = Config(args.width, args.layers, args.heads, args.context)
    model = GPT(cfg)
    data = torch.frombuffer(bytearray(Path(args.data, "train.bin").read_bytes()), dtype=torch.uint8)
    if len(data) <= cfg.context + 1:
        print(f"{args.run}: {args.data}/train.bin has {len(data)} bytes, too few for context {cfg.context}",
              file=sys.stderr)
        return 1
    batches = torch.Generator().manual_seed(args.seed + 1)
    opt = torch.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr, betas=(0.9, 0.95))
    offsets = torch.arange(cfg.context + 1)
    print(f"{args.run}: {model.n_params():,} parameters {cfg.as_dict()}, peak lr {args.lr:g}, "
          f"warm-up {warmup}, cosine to {args.min_lr_ratio:g}x, batch {args.batch}x{cfg.context} bytes, "
          f"{args.steps} steps, snapshot every {args.every}", flush=True)

    step_times: list[float] = []
    blocked: list[float] = []
    recent: list[float] = []
    t0 = time.monotonic()
    with ckstore.CheckpointPusher(args.run, store=args.store, binary=args.binary, interval=args.every) as pusher:
        for step in range(1, args.steps + 1):
            started = time.perf_counter()
            lr = lr_at(step, args.lr, args.steps, warmup, args.min_lr_ratio)
            for group in opt.param_groups:
                group["lr"] = lr
            starts = torch.randint(0, len(data) - cfg.context - 1, (args.batch,), generator=batches)
            window = data[starts[:, None] + offsets].long()
            loss = model(window[:, :-1], window[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            value = loss.item()
            step_times.append(time.perf_counter() - started)
            if not math.isfinite(value):
                print(f"{args.run}: loss diverged at step {step} (lr {lr:g})", file=sys.stderr)
                return 1
            recent.append(value)
            if step % args.every == 0:
                before = time.perf_counter()
                pusher.maybe_push(step, model.state_dict(),
                                  metrics={"train_loss": sum(recent) / len(recent), "lr": lr})
                blocked.append(time.perf_counter() - before)
                if step % (args.every * 5) == 0 or step == args.steps:
                    print(f"{args.run}: step {step}, lr {lr:.2e}, train loss {sum(recent) / len(recent):.4f}, "
                          f"{time.monotonic() - t0:.0f} s", flush=True)
                recent.clear()
    took = time.monotonic() - t0
    summary = {
        "run": args.run,
        "steps": args.steps,
        "seconds": took,
        "params": model.n_params(),
        "step_median_s": statistics.median(step_times),
        "pushes": len(blocked),
        "push_blocked_median_s": statistics.median(blocked) if blocked else 0.0,
        "push_blocked_max_s": max(blocked, default=0.0),
        "pusher_stats": str(getattr(pusher, "stats", "")),
    }
    print(f"{args.run}: done, {args.steps} steps in {took:.1f} s; training step median "
          f"{1e3 * summary['step_median_s']:.0f} ms; push() blocked the loop "
          f"{1e3 * summary['push_blocked_median_s']:.1f} ms median ({1e3 * summary['push_blocked_max_s']:.1f} ms max) "
          f"over {len(blocked)} pushes", flush=True)
    if summary["pusher_stats"]:
        print(f"{args.run} {summary['pusher_stats']}", flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
