"""One optimisation step of a run (no optimizer step): plain or MutualNet, and its schedule.

    lr_at(cfg, step, steps_per_epoch) -> learning rate (edge.core.schedule.cosine_lr, warm-up of
        cfg.warmup_epochs)
    plain_step(model, x, y, amp) -> (loss, top-1 of the batch)
    mutual_step(cfg, model, x, y, step, amp) -> (summed loss, full-width top-1)
    sub_configs(cfg, step) -> [(width, resolution, frames)] x 3; soft_cross_entropy(logits, probs)
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.core.schedule import cosine_lr
from edge.train.config import WIDTH_STEP, TrainConfig
from edge.train.data import resample


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0 at the last step."""
    total = cfg.epochs * steps_per_epoch
    return cosine_lr(cfg.lr, step, total, warmup=min(int(cfg.warmup_epochs * steps_per_epoch), total - 1))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c p_c log softmax(logits)_c (in-place distillation)."""
    return -(target_probs * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def sub_configs(cfg: TrainConfig, step: int) -> list[tuple[float, int, int]]:
    """The three sub-networks of MutualNet step ``step``: the smallest width and two
    random widths (grid of ``WIDTH_STEP`` inside the range), each at a random
    resolution and frame count of the table."""
    rng = np.random.default_rng([cfg.seed, step, 1])
    lo, hi = min(cfg.widths), max(cfg.widths)
    grid = sorted({round(lo + k * WIDTH_STEP, 4) for k in range(int((hi - lo) / WIDTH_STEP + 1e-9) + 1)} | {lo})
    widths = [lo] + [float(rng.choice(grid)) for _ in range(2)]
    return [(w, int(rng.choice(cfg.resolutions)), int(rng.choice(cfg.frames))) for w in widths]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mutual_step(cfg: TrainConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
                amp: bool) -> tuple[float, float]:
    """Forward/backward of the four MutualNet passes (no optimizer step); (loss, full-width acc)."""
    hi = max(cfg.widths)
    subs = sub_configs(cfg, step)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    total = 0.0
    with model.no_sync() if ddp else contextlib.nullcontext():
        with _autocast(x.device, amp):
            logits = model(x, hi)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
    total += loss.item()
    teacher = F.softmax(logits.detach().float(), dim=1)
    acc = (logits.argmax(1) == y).float().mean().item()
    for i, (w, r, f) in enumerate(subs):
        last = i == len(subs) - 1
        with model.no_sync() if ddp and not last else contextlib.nullcontext():
            with _autocast(x.device, amp):
                out = model(resample(x, f, r), w)
            sub = soft_cross_entropy(out, teacher)
            sub.backward()
        total += sub.item()
    return total, acc


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool) -> tuple[float, float]:
    with _autocast(x.device, amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss.item(), (logits.argmax(1) == y).float().mean().item()


__all__ = ["lr_at", "mutual_step", "plain_step", "soft_cross_entropy", "sub_configs"]
