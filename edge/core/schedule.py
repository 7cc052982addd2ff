"""Learning-rate schedule shared by training, pruning fine-tuning and QAT (pure math, no torch).

    cosine_lr(base, step, total, warmup=0) -> float
        steps [0, warmup): linear warm-up base * (step + 1) / warmup;
        then cosine decay from base to 0 at ``total`` (progress clamped to 1 past it).
"""
from __future__ import annotations

import math


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``base`` to 0 at step ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["cosine_lr"]
