"""Knowledge-distillation fine-tune of a pruned network, BN re-estimation, logits.

    kd_loss(student (B, K), teacher (B, K), labels (B,), T, alpha) -> loss
    finetune_kd(student, teacher, x, y, epochs, lr) -> [loss per epoch]
    finetune_kd_resumable(student, clips_u8, labels, teacher_logits, schedule: KDSchedule, state, ...) -> rows
    recalibrate_bn(model, clips_u8 (N, 3, T, S, S) uint8);  logits_of(model, clips_u8) -> (N, K)
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from calib_data.tensor import to_tensor
from edge.core.errors import BadInput
from edge.core.schedule import cosine_lr

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- fine-tune (KD)

class _DepthwiseConv3d(torch.autograd.Function):
    """Depthwise 3-D convolution, stride 1 (weight (C, 1, kT, kH, kW), no bias, no
    dilation) whose backward avoids ATen's CPU ``convolution_backward`` for grouped 3-D
    convs (3-10x slower than the forward): grad-input is the depthwise conv of the output
    gradient with the flipped kernel, grad-weight a depthwise conv of the input by the
    output gradient with batch and channels merged.  Same values as ``F.conv3d`` up to
    float rounding.  (Strided layers keep ATen's backward: these formulas are no faster there.)"""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, stride: tuple[int, ...],
                padding: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, w, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, go: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        b, c = x.shape[:2]
        k = w.shape[2:]
        go = go.contiguous()
        gi = gw = None
        if ctx.needs_input_grad[0]:
            gi = F.conv3d(go, w.flip(2, 3, 4), None, 1, tuple(k[i] - 1 - p[i] for i in range(3)), 1, c)
        if ctx.needs_input_grad[1]:
            xi = x.transpose(0, 1).reshape(1, c * b, *x.shape[2:])
            wi = go.transpose(0, 1).reshape(c * b, 1, *go.shape[2:])
            r = F.conv3d(xi, wi, None, 1, p, s, c * b)[:, :, :k[0], :k[1], :k[2]]
            gw = r.reshape(c, b, *k).sum(1, keepdim=True)
        return gi, gw, None, None


def _depthwise_forward(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    return _DepthwiseConv3d.apply(x, conv.weight, conv.stride, conv.padding)


@contextlib.contextmanager
def fast_depthwise3d(model: nn.Module) -> Iterator[int]:
    """Within the block, the depthwise ``Conv3d`` layers of ``model`` (groups = channels,
    stride 1, no bias, zero padding, no dilation) train through ``_DepthwiseConv3d``:
    3-10x faster backward on CPU, same results.  Yields how many layers it switched; restores
    them on exit (the modules, state dict and export are untouched)."""
    switched = [m for m in model.modules()
                if type(m) is nn.Conv3d and m.groups == m.in_channels == m.out_channels and m.groups > 1
                and m.bias is None and m.dilation == (1, 1, 1) and m.stride == (1, 1, 1)
                and m.padding_mode == "zeros" and isinstance(m.padding, tuple)]
    for m in switched:
        m.forward = functools.partial(_depthwise_forward, m)
    try:
        yield len(switched)
    finally:
        for m in switched:
            del m.forward


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0,
            alpha: float = 0.5) -> torch.Tensor:
    """alpha * CE(labels) + (1 - alpha) * T^2 KL(teacher_T || student_T); logits (B, K)."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1),
                    reduction="batchmean") * temperature ** 2
    return alpha * F.cross_entropy(student, labels) + (1 - alpha) * soft


def load_labelled(data: str | Path, frames: int, resolution: int, limit: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """All labelled clips of ``data``: (N, 3, frames, res, res) float32 and (N,) int64,
    read as ``edgevid eval`` and ``train`` read them (frames sampled uniformly over the
    whole video, evaluation transform)."""
    import numpy as np

    from calib_data.loader import load_clips

    xs, ys = [], []
    for clip, label in load_clips(data, frames, resolution, mode="uniform", limit=limit):
        if label is None:
            raise BadInput(f"{data}: clips must be labelled for fine-tuning")
        xs.append(clip)
        ys.append(label)
    if not xs:
        raise BadInput(f"{data}: no readable clips")
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)


def finetune_kd(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int,
                lr: float = 1e-3, batch: int = 8, seed: int = 0) -> list[float]:
    """KD fine-tune of ``student`` from ``teacher`` on clips ``x`` (N, 3, T, H, W), labels ``y``
    (N,); AdamW, cosine LR.  Returns the mean loss of each epoch."""
    g = torch.Generator().manual_seed(seed)
    teacher.eval()
    with torch.no_grad():
        t_logits = torch.cat([teacher(x[i:i + batch]) for i in range(0, len(x), batch)])
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(1, epochs * ((len(x) + batch - 1) // batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for ep in range(epochs):
        student.train()
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            loss = kd_loss(student(x[idx]), t_logits[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        losses.append(total / len(x))
        log.info("fine-tune epoch %d: loss %.4f", ep + 1, losses[-1])
    return losses


@dataclass(frozen=True)
class KDSchedule:
    """A resumable KD fine-tune: ``epochs`` (may be fractional) passes over the clips in
    batches of ``batch`` (the last partial batch of an epoch is dropped), AdamW at ``lr``
    with ``warmup`` linear steps then cosine decay to 0, loss ``kd_loss(temperature, alpha)``;
    the state is saved every ``save_every`` steps and the ``evaluate`` callback runs every
    ``eval_every`` steps (0: only at the end)."""

    epochs: float
    lr: float = 5e-4
    batch: int = 8
    seed: int = 0
    warmup: int = 10
    weight_decay: float = 1e-4
    temperature: float = 4.0
    alpha: float = 0.5
    save_every: int = 10
    eval_every: int = 0

    def __post_init__(self) -> None:
        if not (self.epochs > 0 and self.batch >= 2 and self.lr > 0):
            raise BadInput(f"fine-tune needs epochs > 0, batch >= 2 and lr > 0, got {self.epochs}, {self.batch}, "
                           f"{self.lr}")

    def steps_per_epoch(self, n: int) -> int:
        if n < self.batch:
            raise BadInput(f"{n} training clips: fewer than one batch of {self.batch}")
        return n // self.batch

    def total_steps(self, n: int) -> int:
        return max(1, round(self.epochs * self.steps_per_epoch(n)))

    def lr_at(self, step: int, total: int) -> float:
        return cosine_lr(self.lr, step, total, self.warmup)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, clips_u8: Any, batch: int = 16) -> nn.Module:
    """Re-estimate every BatchNorm's running mean / variance (cumulative average) on uint8
    clips (N, 3, T, S, S), in place; weights untouched.  After pruning, the layers after
    a pruned conv see sums over fewer channels, so their stored statistics are stale;
    this restores most of the accuracy before any fine-tuning."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(clips_u8), batch):
        if len(clips_u8[i:i + batch]) > 1:
            model(to_tensor(clips_u8[i:i + batch]))
    for m, mo in zip(bns, momenta):
        m.momentum = mo
    return model.eval()


@torch.no_grad()
def logits_of(model: nn.Module, clips_u8: Any, batch: int = 16) -> torch.Tensor:
    """Eval-mode logits (N, K) of uint8 clips (N, 3, T, S, S)."""
    model.eval()
    return torch.cat([model(to_tensor(clips_u8[i:i + batch])) for i in range(0, len(clips_u8), batch)])


def finetune_kd_resumable(student: nn.Module, clips_u8: Any, labels: Any, teacher_logits: torch.Tensor,
                          sched: KDSchedule, state_path: str | Path,
                          evaluate: Callable[[nn.Module], float] | None = None) -> list[dict[str, Any]]:
    """KD fine-tune of ``student`` in place on uint8 clips (N, 3, T, S, S) with labels (N,)
    and precomputed teacher logits (N, K), checkpointed to ``state_path`` (atomic; weights,
    optimizer, step, history) and resumed from it when it holds the same schedule.

    The data order of epoch ``e`` is ``default_rng([seed, e])``'s permutation and torch's RNG
    (dropout) is reseeded every step, so a stopped and resumed run ends where an
    uninterrupted one does.  Returns the history: one row per evaluation (step, epoch,
    lr, mean training loss since the previous row, ``top1`` from ``evaluate``, seconds).
    """
    import time

    import numpy as np

    from edge.checkpoint import atomic_save

    state_path = Path(state_path)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    n = len(labels)
    if len(clips_u8) != n or len(teacher_logits) != n:
        raise BadInput(f"fine-tune: {len(clips_u8)} clips, {n} labels and {len(teacher_logits)} teacher logits differ")
    spe, total = sched.steps_per_epoch(n), sched.total_steps(n)
    opt = torch.optim.AdamW(student.parameters(), lr=sched.lr, weight_decay=sched.weight_decay)
    step, history, seconds = 0, [], 0.0
    pending: list[float] = []
    sched_json = {k: getattr(sched, k) for k in sched.__dataclass_fields__}
    if state_path.is_file():
        from edge.checkpoint import load_into, load_pickle

        st = load_pickle(state_path)
        if st.get("schedule") != sched_json:
            raise BadInput(f"{state_path}: fine-tune state of another schedule ({st.get('schedule')}); "
                           "remove it or use another --out")
        load_into(student, st["student"], state_path)
        opt.load_state_dict(st["opt"])
        step, history, seconds = int(st["step"]), list(st["history"]), float(st.get("seconds", 0.0))
        pending = [float(v) for v in st.get("losses", [])]
        log.info("resumed %s at step %d/%d", state_path, step, total)

    def save() -> None:
        payload = {"student": {k: v.detach().clone() for k, v in student.state_dict().items()},
                   "opt": opt.state_dict(), "step": step, "history": history, "schedule": sched_json,
                   "seconds": seconds, "losses": list(losses)}
        atomic_save(payload, state_path)

    def record(losses: list[float]) -> None:
        row = {"step": step, "epoch": round(step / spe, 4), "lr": sched.lr_at(max(0, step - 1), total),
               "loss": float(np.mean(losses)) if losses else None, "seconds": round(seconds, 1)}
        if evaluate is not None:
            row["top1"] = evaluate(student)
        history.append(row)
        log.info("fine-tune step %d/%d (epoch %.2f): loss %s top-1 %s", step, total, row["epoch"], row["loss"],
                 row.get("top1"))

    losses: list[float] = pending
    with fast_depthwise3d(student):
        while step < total:
            t0 = time.perf_counter()
            epoch, i = divmod(step, spe)
            idx = np.sort(np.random.default_rng([sched.seed, epoch]).permutation(n)[i * sched.batch:
                                                                                    (i + 1) * sched.batch])
            torch.manual_seed(sched.seed * 1_000_003 + step)
            student.train()
            for g in opt.param_groups:
                g["lr"] = sched.lr_at(step, total)
            loss = kd_loss(student(to_tensor(clips_u8[idx])), teacher_logits[idx], labels[idx],
                           sched.temperature, sched.alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            seconds += time.perf_counter() - t0
            if step == total or (sched.eval_every and step % sched.eval_every == 0):
                record(losses)
                losses = []
                save()
            elif step % sched.save_every == 0:
                save()
    student.eval()
    return history
