"""The demo's GPT-style decoder in torch: byte vocabulary, pre-LN, causal self-attention.

A minimal GPT-2-shaped model: token and learned position embeddings, ``layers`` blocks of
``x + attn(ln1(x))`` then ``x + mlp(ln2(x))`` (4× MLP, tanh-approximated GELU, no dropout),
a final LayerNorm and an output layer tied to the token embedding. Parameter names follow the
state dict pushed to ckstore (``wte.weight``, ``blocks.0.attn.qkv.weight``, …); the numpy
evaluator (npmodel.py) computes the same function from those names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 256  # bytes


@dataclass(frozen=True)
class Config:
    """Model shape: embedding width, blocks, attention heads, context length (bytes)."""

    width: int = 192
    layers: int = 4
    heads: int = 6
    context: int = 128

    def as_dict(self) -> dict:
        """The fields as a plain dict (for logs and JSON)."""
        return asdict(self)


class Block(nn.Module):
    """One pre-LN transformer block: causal multi-head self-attention, then a 4× MLP."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.attn.proj = nn.Linear(cfg.width, cfg.width)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(cfg.width, 4 * cfg.width)
        self.mlp.proj = nn.Linear(4 * cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.attn.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """The decoder. ``forward(idx, targets)`` returns the mean next-byte cross-entropy (nats)."""

    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not a multiple of heads {cfg.heads}")
        self.cfg = cfg
        self.wte = nn.Embedding(VOCAB, cfg.width)
        self.wpe = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.lm_head = nn.Linear(cfg.width, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one tensor under two names
        for name, p in self.named_parameters():
            if name.endswith(".weight") and p.dim() == 2:
                # GPT-2 init: N(0, 0.02), residual projections scaled down by depth
                std = 0.02 / math.sqrt(2 * cfg.layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on matrices (incl. embeddings), none on biases and norms."""
        decay, no_decay = [], []
        for _, p in self.named_parameters():  # the tied tensor appears once here
            (decay if p.dim() >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def n_params(self) -> int:
        """Distinct parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())
