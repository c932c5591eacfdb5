"""The demo's learning problem, shared by train_mlp.py and evaluate.py (numpy only).

A fixed random *teacher* network (64 → 128 tanh → 10) defines the target function; a two-layer
ReLU MLP *student* (64 → 1024 → 1024 → 10, about 1.13 M parameters) learns it by minibatch
SGD with momentum on a fixed training set whose labels carry Gaussian noise. Validation loss is
the mean squared error against the teacher's noise-free outputs on a held-out set, so it
measures how well the student learned the function, not the noise.

Everything is determined by fixed seeds, so the evaluator regenerates the exact validation set
and teacher the trainer used, without any data files.
"""

from __future__ import annotations

import numpy as np

IN, TEACHER_HIDDEN, HIDDEN, OUT = 64, 128, 1024, 10
N_TRAIN, N_VAL = 65536, 2048
LABEL_NOISE = 0.5          # std of the Gaussian noise added to training labels
TEACHER_SEED, DATA_SEED, INIT_SEED = 1234, 5678, 42

PARAM_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")


def teacher() -> dict[str, np.ndarray]:
    """The fixed teacher network's weights (same on every call)."""
    rng = np.random.default_rng(TEACHER_SEED)
    return {
        "w1": (rng.standard_normal((IN, TEACHER_HIDDEN)) * np.sqrt(2.0 / IN)).astype(np.float32),
        "b1": (rng.standard_normal(TEACHER_HIDDEN) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((TEACHER_HIDDEN, OUT)) * np.sqrt(2.0 / TEACHER_HIDDEN)).astype(np.float32),
    }


def teacher_outputs(x: np.ndarray) -> np.ndarray:
    """Noise-free targets for inputs ``x`` (shape [n, IN])."""
    t = teacher()
    return np.tanh(x @ t["w1"] + t["b1"]) @ t["w2"]


def training_set() -> tuple[np.ndarray, np.ndarray]:
    """The fixed training set: inputs and *noisy* targets (``LABEL_NOISE`` std)."""
    rng = np.random.default_rng(DATA_SEED)
    x = rng.standard_normal((N_TRAIN, IN)).astype(np.float32)
    y = teacher_outputs(x) + LABEL_NOISE * rng.standard_normal((N_TRAIN, OUT)).astype(np.float32)
    return x, y.astype(np.float32)


def validation_set() -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out set: inputs and *clean* teacher targets."""
    rng = np.random.default_rng(DATA_SEED + 1)
    x = rng.standard_normal((N_VAL, IN)).astype(np.float32)
    return x, teacher_outputs(x).astype(np.float32)


def init_student() -> dict[str, np.ndarray]:
    """He-initialized student parameters (float32), identical for every run."""
    rng = np.random.default_rng(INIT_SEED)

    def he(fan_in: int, fan_out: int) -> np.ndarray:
        return (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "fc1.weight": he(IN, HIDDEN), "fc1.bias": np.zeros(HIDDEN, np.float32),
        "fc2.weight": he(HIDDEN, HIDDEN), "fc2.bias": np.zeros(HIDDEN, np.float32),
        "fc3.weight": he(HIDDEN, OUT) / np.float32(4.0), "fc3.bias": np.zeros(OUT, np.float32),
    }


def forward(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Student outputs for inputs ``x`` (weights stored [out, in], as torch's Linear does)."""
    h1 = np.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
    h2 = np.maximum(h1 @ p["fc2.weight"].T + p["fc2.bias"], 0)
    return h2 @ p["fc3.weight"].T + p["fc3.bias"]


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all elements."""
    d = pred.astype(np.float64) - target
    return float(np.mean(d * d))


def loss_and_grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """MSE loss on a minibatch and its gradients with respect to every parameter."""
    h1p = x @ p["fc1.weight"].T + p["fc1.bias"]
    h1 = np.maximum(h1p, 0)
    h2p = h1 @ p["fc2.weight"].T + p["fc2.bias"]
    h2 = np.maximum(h2p, 0)
    out = h2 @ p["fc3.weight"].T + p["fc3.bias"]
    diff = out - y
    loss = float(np.mean(diff * diff))
    g_out = (2.0 / diff.size) * diff
    g = {"fc3.weight": g_out.T @ h2, "fc3.bias": g_out.sum(0)}
    g_h2 = (g_out @ p["fc3.weight"]) * (h2p > 0)
    g["fc2.weight"] = g_h2.T @ h1
    g["fc2.bias"] = g_h2.sum(0)
    g_h1 = (g_h2 @ p["fc2.weight"]) * (h1p > 0)
    g["fc1.weight"] = g_h1.T @ x
    g["fc1.bias"] = g_h1.sum(0)
    return loss, {k: v.astype(np.float32, copy=False) for k, v in g.items()}
