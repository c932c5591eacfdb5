#!/usr/bin/env python3
"""Evaluate one snapshot file of the demo MLP and record its validation loss in ckstore.

    python3 Tools/demo/evaluate.py PATH RUN STEP VARIANT

This is the command `ckstore watch … --exec` runs for every raw snapshot and every LAWA
average, as `evaluate.py "$CKSTORE_PATH" "$CKSTORE_RUN" "$CKSTORE_STEP" "$CKSTORE_VARIANT"`
(watch sets those variables; the values are never pasted into the shell command). It reads the safetensors file with the hook's
parser, computes the mean squared error against the teacher's clean outputs on the fixed
held-out set (mlp_task.py), and records it with
`ckstore metric RUN@STEP val_loss=… --variant VARIANT` (store: $CKSTORE_DIR or --store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))  # the ckstore package (or pip install ./Tools/python)

import mlp_task  # noqa: E402
from ckstore import record_metric, safetensors_io  # noqa: E402


def validation_loss(path: str) -> float:
    """Validation MSE of the student whose parameters are in the safetensors file ``path``."""
    tensors = safetensors_io.read_file(path)
    missing = [n for n in mlp_task.PARAM_NAMES if n not in tensors]
    if missing:
        raise SystemExit(f"evaluate.py: {path} lacks {', '.join(missing)}")
    x, y = mlp_task.validation_set()
    return mlp_task.mse(mlp_task.forward(tensors, x), y)


def main(argv: list[str] | None = None) -> int:
    """Evaluate PATH and record val_loss for RUN@STEP under VARIANT; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("run")
    ap.add_argument("step", type=int)
    ap.add_argument("variant")
    ap.add_argument("--store", default=None)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args(argv)
    loss = validation_loss(args.path)
    record_metric(args.run, args.step, variant=args.variant, store=args.store, binary=args.binary, val_loss=loss)
    print(f"{args.run}@{args.step} {args.variant}: val_loss {loss:.5f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
