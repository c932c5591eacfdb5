"""The demo's GPT forward pass and validation loss in numpy (no torch needed to evaluate).

The evaluator runs once per snapshot as a fresh process under ``ckstore watch``; importing
torch costs seconds of CPU on this machine, numpy a tenth of that, so the evaluator computes
the model of model.py from its state dict with numpy (float32, same operations; the smoke test
checks it agrees with torch). Parameter names are those of ``GPT.state_dict()``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    inner = x * x
    inner *= np.float32(0.044715)
    inner += np.float32(1.0)
    inner *= x
    inner *= np.float32(math.sqrt(2.0 / math.pi))
    np.tanh(inner, out=inner)
    inner += np.float32(1.0)
    inner *= x
    inner *= np.float32(0.5)
    return inner


def layer_count(params: Mapping[str, np.ndarray]) -> int:
    """Number of blocks, from the ``blocks.N.`` names."""
    return len({n.split(".")[1] for n in params if n.startswith("blocks.")})


def mean_loss(params: Mapping[str, np.ndarray], heads: int, inputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean next-byte cross-entropy (nats) of the model ``params`` on int arrays [B, T]."""
    p = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    b, t = inputs.shape
    x = p["wte.weight"][inputs] + p["wpe.weight"][:t]
    d = x.shape[-1]
    hd = d // heads
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
    for i in range(layer_count(p)):
        pre = f"blocks.{i}."
        h = _layer_norm(x, p[pre + "ln1.weight"], p[pre + "ln1.bias"])
        qkv = h @ p[pre + "attn.qkv.weight"].T + p[pre + "attn.qkv.bias"]
        q, k, v = (z.reshape(b, t, heads, hd).transpose(0, 2, 1, 3) for z in np.split(qkv, 3, axis=-1))
        att = q @ k.transpose(0, 1, 3, 2) * np.float32(1.0 / math.sqrt(hd)) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        x = x + y @ p[pre + "attn.proj.weight"].T + p[pre + "attn.proj.bias"]
        h = _layer_norm(x, p[pre + "ln2.weight"], p[pre + "ln2.bias"])
        h = _gelu_tanh(h @ p[pre + "mlp.fc.weight"].T + p[pre + "mlp.fc.bias"])
        x = x + h @ p[pre + "mlp.proj.weight"].T + p[pre + "mlp.proj.bias"]
    logits = _layer_norm(x, p["ln_f.weight"], p["ln_f.bias"]) @ p["wte.weight"].T  # tied output layer
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logz = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(logits, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    return float((logz - picked).mean())


def validation_batch(val_path: str | Path, sequences: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed validation set: ``sequences`` windows of ``context``+1 bytes, evenly spaced
    over the validation split (the same windows for every snapshot and every variant)."""
    data = np.frombuffer(Path(val_path).read_bytes(), dtype=np.uint8)
    span = context + 1
    if len(data) < span:
        raise ValueError(f"{val_path}: {len(data)} bytes, fewer than one window of {span}")
    starts = np.linspace(0, len(data) - span, sequences).astype(np.int64)
    windows = np.stack([data[s:s + span] for s in starts]).astype(np.int64)
    return windows[:, :-1], windows[:, 1:]
