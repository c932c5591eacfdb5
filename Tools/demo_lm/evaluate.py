#!/usr/bin/env python3
"""The paired evaluator of the language-model demo: validation loss of raw, LAWA, EMA and SWA.

    python3 Tools/demo_lm/evaluate.py PATH RUN STEP VARIANT --data DIR --heads H
                                      [--context T] [--sequences N] [--ema-decay D]

``ckstore watch --run RUN --lawa k=K,stride=NU --raw --exec …`` runs it for every raw snapshot
and every LAWA average as soon as they exist, passing the values through the environment
(``"$CKSTORE_PATH" "$CKSTORE_RUN" "$CKSTORE_STEP" "$CKSTORE_VARIANT"``). It computes the mean
next-byte cross-entropy of the weights in PATH on the fixed validation windows (npmodel.py,
numpy: no torch import per snapshot) and records it with ``ckstore metric RUN@STEP
val_loss=… --variant VARIANT``. For a raw snapshot it also asks the store, at the same step,
for the EMA over the stored snapshots (``ckstore get --ema decay=D --at STEP``, variant
``ema-dD``) and for SWA, their uniform mean (``ckstore get --swa start=0 --at STEP``, variant
``swa``), through ``ckstore.load``, and records their losses too. The EMA's default decay 0.7
gives it about the mean age of the LAWA window: 0.7/0.3 ≈ 2.3 ν against (k−1)/2 = 2.5 ν.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # the ckstore package (or pip install ./Tools/python)

import npmodel  # noqa: E402
import ckstore  # noqa: E402

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The float tensors of a safetensors file as numpy arrays (F32/F16/F64; others skipped)."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, not a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in _DTYPES:
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")) \
            .reshape(info["shape"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Evaluate PATH (and EMA/SWA for raw steps), record val_loss; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("run")
    ap.add_argument("step", type=int)
    ap.add_argument("variant")
    ap.add_argument("--data", required=True, help="folder with val.bin (corpus.py)")
    ap.add_argument("--heads", type=int, required=True, help="attention heads of the model")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--sequences", type=int, default=16, help="validation windows")
    ap.add_argument("--ema-decay", type=float, default=0.7)
    ap.add_argument("--no-ema-swa", action="store_true", help="only evaluate PATH")
    ap.add_argument("--store", default=None)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    x, y = npmodel.validation_batch(Path(args.data, "val.bin"), args.sequences, args.context)
    results = {args.variant: npmodel.mean_loss(read_safetensors(args.path), args.heads, x, y)}
    if args.variant == "raw" and not args.no_ema_swa:
        # no_cache: each EMA/SWA result is read once; caching them would store a model per step
        where = {"run": args.run, "at": args.step, "store": args.store, "binary": args.binary, "no_cache": True}
        ema = ckstore.load(ema=f"decay={args.ema_decay}", **where)
        results[f"ema-d{args.ema_decay}"] = npmodel.mean_loss(ema, args.heads, x, y)
        swa = ckstore.load(swa="start=0", **where)  # every stored snapshot up to STEP
        results["swa"] = npmodel.mean_loss(swa, args.heads, x, y)
    for variant, loss in results.items():
        ckstore.record_metric(args.run, args.step, variant=variant, store=args.store, binary=args.binary,
                              val_loss=loss)
    print(f"{args.run}@{args.step} " + ", ".join(f"{v} {loss:.4f}" for v, loss in results.items())
          + f" ({time.monotonic() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
