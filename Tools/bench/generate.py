#!/usr/bin/env python3
"""Seeded generator of a realistic GPT-2-small training trajectory, written as safetensors.

    python3 Tools/bench/generate.py --out DIR [--steps 6] [--dtype f32|bf16] [--scale 1.0]
                                    [--seed 0] [--interval 1000]

Writes DIR/step{S:06d}.safetensors for S = 0, interval, 2·interval, … (--steps files).

Shapes are GPT-2 small (124M parameters, Hugging Face names): wte 50257×768, wpe 1024×768,
12 blocks of ln_1 (weight, bias 768), attn.c_attn 768×2304 (+ bias 2304), attn.c_proj 768×768
(+ bias), ln_2, mlp.c_fc 768×3072 (+ bias 3072), mlp.c_proj 3072×768 (+ bias 768), then ln_f.
--scale F multiplies the big dimensions (vocabulary, positions, width; the MLP stays 4× the
width), so the parameter count scales with about F²; the 12 blocks are kept. --model picks
another GPT-2 size: gpt2-medium (24 blocks, width 1024), gpt2-large (36 blocks, width 1280,
20 heads: 774M parameters, 3.1 GB per f32 snapshot), gpt2-xl (48 blocks, width 1600).

Values: step 0 is drawn from N(0, 0.02) (LayerNorm weights 1 + N(0, 0.02)). Each later
snapshot is the previous float32 state plus an update x += N(0, 1e-3·|x| + 2e-6), i.e. a
relative change of about 1e-3 per snapshot, as between consecutive checkpoints of a real run.
The state is kept in float32 ("master weights"); --dtype bf16 writes it rounded to bfloat16
(round to nearest even) as raw uint16. Only numpy is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time

import numpy as np

REL_UPDATE = 1e-3   # relative size of one snapshot-to-snapshot update
ABS_UPDATE = 2e-6   # floor, so that values near zero move too
INIT_STD = 0.02


# Presets: (layers, width, heads). Heads do not change any tensor shape (c_attn is width × 3·width);
# they are recorded for the reader. gpt2-large: 774M parameters, 3.1 GB per f32 snapshot.
MODELS = {"gpt2": (12, 768, 12), "gpt2-medium": (24, 1024, 16), "gpt2-large": (36, 1280, 20),
          "gpt2-xl": (48, 1600, 25)}


def gpt2_shapes(scale: float = 1.0, layers: int | None = None,
                model: str = "gpt2") -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the GPT-2 `model` preset (vocabulary 50257, 1024
    positions), in the order the file stores them; `scale` multiplies vocabulary, positions and
    width, `layers` overrides the preset's block count."""
    preset_layers, width, _ = MODELS[model]
    layers = preset_layers if layers is None else layers

    def s(n: int) -> int:
        return max(1, int(round(n * scale)))
    vocab, pos, d = s(50257), s(1024), s(width)
    ff = 4 * d
    out: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (vocab, d)), ("wpe.weight", (pos, d))]
    for i in range(layers):
        p = f"h.{i}."
        out += [
            (p + "ln_1.weight", (d,)), (p + "ln_1.bias", (d,)),
            (p + "attn.c_attn.weight", (d, 3 * d)), (p + "attn.c_attn.bias", (3 * d,)),
            (p + "attn.c_proj.weight", (d, d)), (p + "attn.c_proj.bias", (d,)),
            (p + "ln_2.weight", (d,)), (p + "ln_2.bias", (d,)),
            (p + "mlp.c_fc.weight", (d, ff)), (p + "mlp.c_fc.bias", (ff,)),
            (p + "mlp.c_proj.weight", (ff, d)), (p + "mlp.c_proj.bias", (d,)),
        ]
    out += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    return out


def to_bf16_bits(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), round to nearest even (finite inputs)."""
    u = x.view(np.uint32)
    if out is None:
        out = np.empty(x.shape, dtype=np.uint16)
    step = 1 << 22  # elements per slice: bounds the uint32 temporaries
    flat_u, flat_o = u.reshape(-1), out.reshape(-1)
    for i in range(0, flat_u.size, step):
        v = flat_u[i:i + step]
        t = (v >> 16) & 1
        t += 0x7FFF
        t += v
        t >>= 16
        flat_o[i:i + step] = t
    return out


def write_safetensors(path: str, tensors: list[tuple[str, str, np.ndarray]],
                      metadata: dict[str, str] | None = None) -> int:
    """Write (name, dtype name, C-contiguous little-endian array) in the given order.

    Returns the file size. The header is padded with spaces to a multiple of 8 bytes; data are
    written straight from the arrays' buffers."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dt, arr in tensors:
        n = arr.nbytes
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, arr in tensors:
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            f.write(memoryview(arr).cast("B"))
    os.replace(tmp, path)
    return 8 + len(hb) + offset


def snapshot_tensors(state: list[tuple[str, np.ndarray]], dtype: str,
                     bf16_bufs: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    if dtype == "f32":
        return [(n, "F32", a) for n, a in state]
    out = []
    for n, a in state:
        buf = bf16_bufs.get(n)
        if buf is None:
            buf = bf16_bufs[n] = np.empty(a.shape, dtype=np.uint16)
        out.append((n, "BF16", to_bf16_bits(a, buf)))
    return out


def generate(out_dir: str, steps: int, dtype: str, scale: float, seed: int, interval: int,
             quiet: bool = False, model: str = "gpt2") -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = gpt2_shapes(scale, model=model)
    state: list[tuple[str, np.ndarray]] = []
    for name, shape in shapes:
        a = rng.standard_normal(shape, dtype=np.float32)
        a *= INIT_STD
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            a += 1.0
        state.append((name, a))
    nparams = sum(a.size for _, a in state)
    scratch = np.empty(max(a.size for _, a in state), dtype=np.float32)
    noise = np.empty_like(scratch)
    bf16_bufs: dict[str, np.ndarray] = {}
    paths = []
    for k in range(steps):
        t0 = time.perf_counter()
        if k > 0:
            for _, a in state:
                flat = a.reshape(-1)
                sc, nz = scratch[:flat.size], noise[:flat.size]
                np.abs(flat, out=sc)
                sc *= REL_UPDATE
                sc += ABS_UPDATE
                rng.standard_normal(out=nz, dtype=np.float32)
                nz *= sc
                flat += nz
        step = k * interval
        meta = {"format": "pt", "generator": "ckstore Tools/bench/generate.py",
                "step": str(step), "seed": str(seed), "scale": repr(scale),
                "model": model}
        path = os.path.join(out_dir, f"step{step:06d}.safetensors")
        size = write_safetensors(path, snapshot_tensors(state, dtype, bf16_bufs), meta)
        paths.append(path)
        if not quiet:
            print(f"{path}: {nparams} params, {size / 1e6:.1f} MB, {time.perf_counter() - t0:.2f} s",
                  file=sys.stderr)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--steps", type=int, default=6, help="number of snapshots (default 6)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the big dimensions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--interval", type=int, default=1000, help="training steps between snapshots")
    ap.add_argument("--model", choices=sorted(MODELS), default="gpt2",
                    help="shape preset: gpt2 (small, 124M), gpt2-medium, gpt2-large (774M), gpt2-xl")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.steps < 1 or a.scale <= 0 or a.interval < 1:
        ap.error("--steps and --interval must be ≥ 1 and --scale > 0")
    t0 = time.perf_counter()
    generate(a.out, a.steps, a.dtype, a.scale, a.seed, a.interval, a.quiet, a.model)
    if not a.quiet:
        print(f"generated {a.steps} snapshots in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
