"""Optimizers and learning-rate schedules from the ``optim`` and ``schedule`` sections."""
from __future__ import annotations

import math

import torch

from ..config import Config


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg["optim"]
    params = [p for p in model.parameters() if p.requires_grad]
    if o["name"] == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    if o["name"] == "adam":
        return torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    return torch.optim.SGD(params, lr=o["lr"], weight_decay=o["weight_decay"], momentum=o["momentum"])


def schedule_factor(cfg: Config, total_steps: int):
    """LR multiplier per step: linear warm-up then cosine decay, constant, or a one-cycle shape
    (cosine up from lr/25 over ``pct_start`` of the steps, then cosine down to lr/25e4, as torch's OneCycleLR)."""
    s = cfg["schedule"]
    warmup, floor = s["warmup_steps"], s["min_lr_ratio"]

    def cosine(start: float, end: float, progress: float) -> float:
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))

    def factor(step: int) -> float:
        if s["name"] == "onecycle":
            peak = max(1.0, s["pct_start"] * total_steps)
            if step < peak:
                return cosine(1 / 25, 1.0, step / peak)
            return cosine(1.0, 1 / 25e4, (step - peak) / max(1.0, total_steps - peak))
        if step < warmup:
            return (step + 1) / warmup
        if s["name"] == "constant":
            return 1.0
        return cosine(1.0, floor, (step - warmup) / max(1, total_steps - warmup))

    return factor


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(cfg, total_steps))
