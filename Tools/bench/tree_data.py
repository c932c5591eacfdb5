#!/usr/bin/env python3
"""Data for the tree-averaging benchmarks (issue 11): per-rank checkpoint directories.

    python3 Tools/bench/tree_data.py split SRC_DIR OUT_ROOT [--ranks 4]
        For each SRC_DIR/step*.safetensors (what generate.py writes), writes the directory
        OUT_ROOT/step*/ holding rank-0000R-of-0000N.safetensors (rank R's rows of every tensor,
        np.array_split along the first dimension) and a config.json: the same tensors as the
        single file, split as a tensor-parallel job would write them.

    python3 Tools/bench/tree_data.py synth OUT_DIR --bytes B [--ranks 4] [--tensors 8] [--seed S]
        Writes OUT_DIR/rank-0000R-of-0000N.safetensors, N files of --tensors float32 tensors each,
        B bytes of tensor data in total (random normal values, seeded), plus a config.json.
        Tensors are generated one at a time, so memory stays at one tensor whatever B is.

Only numpy is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np


def read_safetensors(path: Path) -> tuple[dict, list[tuple[str, str, list[int], np.ndarray]]]:
    """The file's __metadata__ and its tensors (name, dtype, shape, raw bytes as uint8 array)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = np.fromfile(f, dtype=np.uint8)
    meta = header.pop("__metadata__", {})
    tensors = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        tensors.append((name, info["dtype"], info["shape"], data[a:b]))
    return meta, tensors


def write_safetensors(path: Path, meta: dict, tensors: list[tuple[str, str, list[int], object]]) -> None:
    """Writes tensors whose data are uint8 arrays or callables returning one (generated lazily)."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
    header: dict = {"__metadata__": meta} if meta else {}
    offset = 0
    for name, dtype, shape, _ in tensors:
        length = int(np.prod(shape)) * sizes[dtype] if shape else sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + length]}
        offset += length
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, data in tensors:
            f.write((data() if callable(data) else data).tobytes())


def split(src: Path, out_root: Path, ranks: int) -> None:
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
    for step_file in sorted(src.glob("step*.safetensors")):
        meta, tensors = read_safetensors(step_file)
        out = out_root / step_file.name.removesuffix(".safetensors")
        out.mkdir(parents=True, exist_ok=True)
        for r in range(ranks):
            parts = []
            for name, dtype, shape, raw in tensors:
                rows = np.array_split(np.arange(shape[0]), ranks)[r]
                row_bytes = (int(np.prod(shape[1:])) if len(shape) > 1 else 1) * sizes[dtype]
                parts.append((name, dtype, [len(rows)] + list(shape[1:]),
                              raw[rows[0] * row_bytes:(rows[-1] + 1) * row_bytes] if len(rows) else raw[:0]))
            write_safetensors(out / f"rank-{r:05d}-of-{ranks:05d}.safetensors", {**meta, "rank": str(r)}, parts)
        (out / "config.json").write_text(json.dumps({"ranks": ranks, "source": step_file.name}))
        print(f"{out}: {ranks} rank files", file=sys.stderr)


def synth(out: Path, total: int, ranks: int, count: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per_tensor = total // (ranks * count) // 4 // 1024 * 1024  # float32 values, rows of 1024
    for r in range(ranks):
        tensors = []
        for t in range(count):
            rng_seed = (seed, r, t)

            def make(rng_seed=rng_seed) -> np.ndarray:
                return np.random.default_rng(rng_seed).standard_normal(per_tensor, dtype=np.float32)

            tensors.append((f"layer.{t}.weight", "F32", [per_tensor // 1024, 1024], make))
        write_safetensors(out / f"rank-{r:05d}-of-{ranks:05d}.safetensors", {"rank": str(r)}, tensors)
    (out / "config.json").write_text(json.dumps({"ranks": ranks, "seed": seed}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("src", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--ranks", type=int, default=4)
    g = sub.add_parser("synth")
    g.add_argument("out", type=Path)
    g.add_argument("--bytes", type=float, required=True)
    g.add_argument("--ranks", type=int, default=4)
    g.add_argument("--tensors", type=int, default=8)
    g.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "split":
        split(a.src, a.out, a.ranks)
    else:
        synth(a.out, int(a.bytes), a.ranks, a.tensors, a.seed)


if __name__ == "__main__":
    main()
