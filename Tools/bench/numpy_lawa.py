#!/usr/bin/env python3
"""The LAWA average as users write it today with numpy + safetensors (the reference).

    python3 Tools/bench/numpy_lawa.py -o OUT.safetensors IN1.safetensors … INk.safetensors

Give the inputs oldest first. Float tensors are accumulated in float64, divided by k and cast
back to their dtype; other tensors are taken from the newest input. bfloat16 loads through
ml_dtypes (safetensors.numpy maps BF16 to ml_dtypes.bfloat16).
"""

import argparse

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()

    acc, dtypes, last = {}, {}, None
    for path in args.inputs:
        tensors = load_file(path)
        for name, x in tensors.items():
            if not (x.dtype.kind == "f" or x.dtype == ml_dtypes.bfloat16):
                continue  # integer / bool tensors: copied from the newest input below
            if name in acc:
                acc[name] += x.astype(np.float64)
            else:
                acc[name] = x.astype(np.float64)
                dtypes[name] = x.dtype
        last = tensors
        del tensors

    out = {}
    for name, x in last.items():
        if name in acc:
            a = acc.pop(name)
            a /= len(args.inputs)
            out[name] = a.astype(dtypes[name])
        else:
            out[name] = x
    with safe_open(args.inputs[-1], framework="numpy") as f:
        metadata = f.metadata()
    save_file(out, args.output, metadata=metadata)


if __name__ == "__main__":
    main()
