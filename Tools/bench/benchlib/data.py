"""Generated inputs: seeded GPT-2 trajectories (generate.py), reused across calls with --keep."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from .env import HERE
from .measure import log

sys.path.insert(0, HERE)
import generate  # noqa: E402

STRIDE = 1000          # training steps between generated snapshots (generate.py --interval)


def ensure_trajectory(folder: str, steps: int, dtype: str, scale: float, seed: int,
                      model: str = "gpt2", step_numbers: list[int] | None = None) -> list[str]:
    """Generate (or reuse an identical earlier one) and return the paths, oldest first.

    Files are named step{S:06d}.safetensors for S = 0, STRIDE, …; step_numbers renames them
    to other steps (the sweep stores them under its own step numbers)."""
    stamp = {"steps": steps, "dtype": dtype, "scale": scale, "seed": seed, "interval": STRIDE,
             "model": model, "generator_mtime": os.path.getmtime(generate.__file__)}
    stamp_path = os.path.join(folder, "params.json")
    paths = [os.path.join(folder, f"step{k * STRIDE:06d}.safetensors") for k in range(steps)]
    try:
        if json.load(open(stamp_path)) == stamp and all(map(os.path.exists, paths)):
            log(f"reusing {folder}")
            return paths
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    generate.generate(folder, steps, dtype, scale, seed, STRIDE, quiet=True, model=model)
    log(f"generated {steps} {model} {dtype} snapshots at scale {scale} in {folder} "
        f"({time.perf_counter() - t0:.1f} s)")
    json.dump(stamp, open(stamp_path, "w"))
    return paths


def step_of(path: str) -> int:
    """The step number in a generated file name."""
    return int(os.path.basename(path)[4:10])


def params_per_snapshot(scale: float, model: str = "gpt2") -> int:
    """Parameter count of one generated snapshot."""
    n = 0
    for _, shape in generate.gpt2_shapes(scale, model=model):
        p = 1
        for d in shape:
            p *= d
        n += p
    return n


def rm(*paths: str) -> None:
    """Remove files, ignoring missing ones."""
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def same_tensors(a: str, b: str) -> dict:
    """Compare the tensors of two safetensors files (ignoring metadata)."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, for BF16 files)
    import numpy as np
    from safetensors.numpy import load_file
    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        return {"identical": False, "reason": "different tensor names"}
    differing, max_abs = 0, 0.0
    for name in x:
        u, v = x[name], y[name]
        if u.dtype != v.dtype or u.shape != v.shape:
            return {"identical": False, "reason": f"{name}: dtype or shape differs"}
        if not np.array_equal(u.view(np.uint8), v.view(np.uint8)):
            differing += 1
            max_abs = max(max_abs, float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)))))
    return {"identical": differing == 0, "tensors_differing": differing, "max_abs_diff": max_abs}
