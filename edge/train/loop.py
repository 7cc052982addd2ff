"""The training loop: run (or resume) a training run as its configuration says.

    train(cfg, resume=False, progress=True, stop_after=None) -> TrainResult(out, steps, seconds, history,
        accuracy)

Set-up (checks, device, cache, model, optimizer, resume), the step loop with per-epoch records and
checkpoints, and the end of the run (BN post-statistics of a mutual run, accuracy on ``cfg.val``).
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from calib_data.tensor import to_tensor
from edge.core.errors import BadInput
from edge.evaluate import evaluate, models_of
from edge.models.registry import model_info
from edge.models.slim import SlimConfig, SlimNet, config_grid, slimmable
from edge.train.config import TrainConfig, TrainResult
from edge.train.data import ClipCache, build_cache, calib_batches
from edge.train.dist import Dist, barrier, init_distributed, train_device
from edge.train.state import build_model, load_init, load_state, save_state
from edge.train.steps import lr_at, mutual_step, plain_step

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """The mutable state of one training run."""

    cfg: TrainConfig
    out: Path
    d: Dist
    device: torch.device
    amp: bool
    cache: ClipCache
    steps_per_epoch: int
    total: int
    t0: float
    model: nn.Module
    opt: torch.optim.Optimizer
    ddp_model: nn.Module
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    val_clips: dict = field(default_factory=dict)  # (frames, resolution) -> held-out clips, read once


def _check(cfg: TrainConfig, resume: bool) -> Path:
    model_info(cfg.model)
    if cfg.mutual and cfg.model not in slimmable():
        raise BadInput(f"--mutual: model {cfg.model!r} is not slimmable; slimmable: {', '.join(slimmable())}")
    out = Path(cfg.out)
    if out.exists() and not resume:
        raise BadInput(f"{out}: exists; pass --resume to continue that run or choose another --out")
    if out.exists() and out.is_dir():
        raise BadInput(f"{out}: is a folder; --out names the checkpoint file")
    return out


def _cache(cfg: TrainConfig, out: Path, d: Dist) -> ClipCache:
    """The training clips at the largest frames and resolution (decoded by rank 0 first)."""
    cache_dir = out.parent / f"{out.name}.cache"
    fmax, rmax = max(cfg.frames), max(cfg.resolutions)
    if d.main:
        cache = build_cache(cfg.data, fmax, rmax, cache_dir, cfg.limit)
    barrier(d)
    if not d.main:
        cache = build_cache(cfg.data, fmax, rmax, cache_dir, cfg.limit)
    return cache


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm parameters (ndim <= 1)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def _setup(cfg: TrainConfig, resume: bool) -> _Run:
    out = _check(cfg, resume)
    d = init_distributed(cfg.device)
    device = train_device(cfg, d)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # many input shapes in a mutual run: autotuning each costs more
    if cfg.batch_size % d.world:
        raise BadInput(f"--batch-size {cfg.batch_size} is not divisible by the {d.world} processes")
    cache = _cache(cfg, out, d)
    n = len(cache.labels)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch < 1:
        raise BadInput(f"{cfg.data}: {n} usable clips, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * steps_per_epoch
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, len(cache.classes))
    if cfg.init:
        load_init(model, cfg.init)
    model.to(device)
    opt = _optimizer(cfg, model)
    step, history, done = 0, [], False
    if resume and out.exists():
        step, history, done = load_state(cfg, model, opt)
        if d.main:
            log.info("resuming %s at step %d of %d", out, step, total)
    ddp_model: nn.Module = model
    if d.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    return _Run(cfg, out, d, device, amp, cache, steps_per_epoch, total, t0, model, opt, ddp_model, step,
                history, done)


def _progress_bar(r: _Run, progress: bool) -> Any:
    if not (progress and r.d.main and not r.done):
        return None
    from tqdm import tqdm

    return tqdm(total=r.total, initial=r.step, desc=f"train {r.cfg.model}{' mutual' if r.cfg.mutual else ''}",
                unit="step", dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)


def _one_step(r: _Run) -> tuple[int, float, float]:
    """Batch, schedule, forward/backward and optimizer step of ``r.step``; (epoch, loss, acc)."""
    cfg, d = r.cfg, r.d
    epoch, i = divmod(r.step, r.steps_per_epoch)
    per_rank = cfg.batch_size // d.world
    perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(r.cache.labels))
    idx = np.sort(perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][d.rank * per_rank:(d.rank + 1) * per_rank])
    x = to_tensor(r.cache.clips[idx], r.device)
    y = torch.as_tensor(r.cache.labels[idx], device=r.device)
    for g in r.opt.param_groups:
        g["lr"] = lr_at(cfg, r.step, r.steps_per_epoch)
    torch.manual_seed(hash((cfg.seed, r.step, d.rank)) % (2**62))
    r.opt.zero_grad(set_to_none=True)
    if cfg.mutual:
        loss, acc = mutual_step(cfg, r.ddp_model, x, y, r.step, r.amp)
    else:
        loss, acc = plain_step(r.ddp_model, x, y, r.amp)
    if not math.isfinite(loss):
        raise BadInput(f"training diverged at step {r.step} (loss {loss}); lower --lr")
    r.opt.step()
    r.step += 1
    return epoch, loss, acc


def _epoch_record(r: _Run, epoch: int, loss: float, acc: float, bar: Any) -> None:
    """Append the finished epoch to the history (with ``val_top1`` when ``cfg.val``) and log it."""
    entry = {"epoch": epoch + 1, "step": r.step, "loss": loss, "train_acc": acc,
             "seconds": round(time.perf_counter() - r.t0, 1)}
    if r.cfg.val and r.d.main:
        entry["val_top1"] = _epoch_val(r.cfg, r.model, r.cache, r.device, r.val_clips)
        r.model.train()
    r.history.append(entry)
    if r.d.main:
        msg = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items())
        if bar is not None:
            bar.write(msg)
        log.info("%s", msg)


def _loop(r: _Run, progress: bool, stop_after: int | None) -> None:
    bar = _progress_bar(r, progress)
    run_loss = run_acc = 0.0
    seen = 0
    r.model.train()
    stop_at = r.total if stop_after is None else min(r.total, r.step + stop_after)
    while r.step < stop_at and not r.done:
        epoch, loss, acc = _one_step(r)
        run_loss += loss
        run_acc += acc
        seen += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{run_loss / seen:.3f}", acc=f"{run_acc / seen:.2f}",
                            lr=f"{r.opt.param_groups[0]['lr']:.2e}", refresh=False)
        epoch_end = r.step % r.steps_per_epoch == 0
        if epoch_end:
            _epoch_record(r, epoch, run_loss / seen, run_acc / seen, bar)
            run_loss = run_acc = 0.0
            seen = 0
        if r.d.main and (epoch_end or r.step % r.cfg.save_every == 0) and r.step < r.total:
            save_state(r.cfg, r.model, r.opt, r.step, r.cache.classes, r.history, done=False)
        if epoch_end:
            barrier(r.d)
    if bar is not None:
        bar.close()


def _finish(r: _Run) -> list[dict[str, Any]]:
    """BN post-statistics of every configuration (mutual), accuracy on ``cfg.val``, the final checkpoint."""
    cfg, model = r.cfg, r.model
    accuracy: list[dict[str, Any]] = []
    model.eval()
    if isinstance(model, SlimNet):
        table = config_grid(cfg.widths, cfg.resolutions, cfg.frames)
        for c in table:
            model.calibrate(c, calib_batches(r.cache, cfg.calib_clips, cfg.batch_size, c.frames, c.resolution,
                                             r.device))
        log.info("BN post-statistics for %d configurations", len(table))
    if cfg.val:
        configs = (model.table() if isinstance(model, SlimNet)
                   else [SlimConfig(cfg.widths[0], cfg.resolutions[0], cfg.frames[0])])
        accuracy = [row.to_json() for row in evaluate(models_of(model), cfg.val, configs,
                                                      batch_size=cfg.batch_size, device=r.device,
                                                      classes=r.cache.classes, clips_cache=r.val_clips)]
    save_state(cfg, model, r.opt, r.step, r.cache.classes, r.history, done=True, accuracy=accuracy)
    return accuracy


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Run (or resume) training as ``cfg`` says; returns where the checkpoint is.

    ``stop_after``: checkpoint and return after this many steps of this call (a
    time slice on a shared machine; ``resume`` continues, with the same result as
    an uninterrupted run)."""
    r = _setup(cfg, resume)
    _loop(r, progress, stop_after)
    accuracy: list[dict[str, Any]] = []
    if r.step < r.total:  # time slice over: save where we are
        if r.d.main:
            save_state(cfg, r.model, r.opt, r.step, r.cache.classes, r.history, done=False)
            log.info("stopped at step %d of %d; continue with --resume", r.step, r.total)
        barrier(r.d)
        return TrainResult(r.out, r.step, time.perf_counter() - r.t0, r.history, accuracy)
    if r.d.main and not r.done:
        accuracy = _finish(r)
    barrier(r.d)
    seconds = time.perf_counter() - r.t0
    if r.d.main:
        log.info("trained %s for %d steps in %.0f s -> %s", cfg.model, r.step, seconds, r.out)
    return TrainResult(r.out, r.step, seconds, r.history, accuracy)


def _epoch_val(cfg: TrainConfig, model: nn.Module, cache: ClipCache, device: torch.device,
               val_clips: dict) -> float:
    """Top-1 of the full configuration on ``cfg.val`` (mutual: after calibrating its BN)."""
    model.eval()
    if isinstance(model, SlimNet):
        full = model.full_config
        model.calibrate(full, calib_batches(cache, min(cfg.calib_clips, 128), cfg.batch_size, full.frames,
                                            full.resolution, device))
    else:
        full = SlimConfig(cfg.widths[0], cfg.resolutions[0], cfg.frames[0])
    rows = evaluate(models_of(model), cfg.val, [full], batch_size=cfg.batch_size, device=device,
                    classes=cache.classes, single_frame=False, count=False, clips_cache=val_clips)
    return rows[0].top1


__all__ = ["train"]
