"""A real training checkpoint for compression measurements: weights + AdamW moments.

Trains the demo GPT (Tools/demo_lm/model.py) briefly on CPU with AdamW on a byte corpus
(the repository's own Swift and Markdown sources), seeded, and writes one safetensors file
per dtype holding every parameter and its optimizer moments (``<name>``,
``<name>.exp_avg``, ``<name>.exp_avg_sq``):

    python3 Tools/bench/real_ckpt.py --out /tmp/real --steps 300
    -> /tmp/real/f32.safetensors, /tmp/real/bf16.safetensors

This is the kind of data the exponent entropy codec (codec 2, docs/FORMAT.md) is measured on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo_lm"))
from model import GPT, Config  # noqa: E402


def corpus(root: Path) -> torch.Tensor:
    """The bytes of the repository's Swift and Markdown sources, in sorted path order."""
    data = bytearray()
    for pattern in ("Sources/**/*.swift", "docs/*.md", "*.md"):
        for p in sorted(root.glob(pattern)):
            data += p.read_bytes()
    return torch.tensor(list(data), dtype=torch.long)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    cfg = Config(width=args.width, layers=args.layers, heads=args.heads, context=128)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=args.lr, betas=(0.9, 0.95))
    data = corpus(Path(__file__).resolve().parents[2])
    gen = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        starts = torch.randint(0, len(data) - cfg.context - 1, (args.batch,), generator=gen)
        x = torch.stack([data[s : s + cfg.context] for s in starts])
        y = torch.stack([data[s + 1 : s + cfg.context + 1] for s in starts])
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f}", file=sys.stderr)
    tensors: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        state = opt.state[p]
        tensors[name] = p.detach().clone()
        tensors[name + ".exp_avg"] = state["exp_avg"].clone()
        tensors[name + ".exp_avg_sq"] = state["exp_avg_sq"].clone()
    os.makedirs(args.out, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(args.out, "f32.safetensors"))
    save_file({k: v.bfloat16().contiguous() for k, v in tensors.items()}, os.path.join(args.out, "bf16.safetensors"))
    n = sum(v.numel() for v in tensors.values())
    print(f"{len(tensors)} tensors, {n} elements ({model.n_params()} parameters)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
