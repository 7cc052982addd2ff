"""QAT fine-tuning of a :class:`quant.qat.GraphNet`.

    QatConfig(epochs, batch_size, lr, weight_decay, seed, limit, recalibrate): hyper-parameters
    finetune(net, clips_u8 (N, 3, T, S, S) uint8, labels (N,), calib [(1, 3, T, S, S) float32], cfg,
             out=checkpoint, resume, val=(clips, labels), on_epoch) -> QatResult(epochs_done, steps, history)
    evaluate(net, clips_u8, labels) -> top-1

Cross entropy, AdamW, :func:`edge.core.schedule.cosine_lr` without warm-up; inputs through
:func:`calib_data.tensor.to_tensor`; a checkpoint (weights, scales, optimizer, history) after every
epoch that ``resume`` continues from.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from calib_data.tensor import to_tensor
from edge.core.errors import BadInput
from edge.core.schedule import cosine_lr
from quant.qat.net import GraphNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatConfig:
    """Fine-tuning hyper-parameters (CPU-sized defaults)."""

    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    limit: int | None = None  # training clips per epoch (None: all)
    recalibrate: bool = True  # pow2/int8 activation scales again after every epoch

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"QAT: bad configuration {self}")


@dataclass
class QatResult:
    epochs_done: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(net: nn.Module, clips_u8: np.ndarray, labels: np.ndarray, batch: int = 16) -> float:
    """Top-1 of ``net`` on uint8 clips (N, 3, T, S, S) (normalised as in training)."""
    net.eval()
    hits = 0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            x = to_tensor(clips_u8[s:s + batch], torch.device("cpu"))
            hits += int((net(x).argmax(dim=1).numpy() == labels[s:s + batch]).sum())
    return hits / max(1, len(labels))


def _save(path: Path, net: GraphNet, opt: torch.optim.Optimizer, cfg: QatConfig, epoch: int, step: int,
          history: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"params": {name: net.params[key].detach().clone() for name, key in net._pkey.items()},
                "qparams": net.qparams(),
                "opt": opt.state_dict(), "config": asdict(cfg), "epoch": epoch, "step": step, "history": history},
               tmp)
    os.replace(tmp, path)


def finetune(net: GraphNet, clips_u8: np.ndarray, labels: np.ndarray, calib: Sequence[np.ndarray],
             cfg: QatConfig, out: str | Path | None = None, resume: bool = True,
             val: tuple[np.ndarray, np.ndarray] | None = None,
             on_epoch: Callable[[dict[str, Any]], None] | None = None) -> QatResult:
    """QAT of ``net`` (fake quantization on) on uint8 training clips (N, 3, T, S, S)
    with ``labels`` (N,); ``calib`` clips (1, 3, T, S, S) set the activation scales
    (before training, after every epoch with ``cfg.recalibrate``, and at the end).
    ``out``: checkpoint written after every epoch (resumed from when ``resume``).
    ``val``: (clips, labels) evaluated after every epoch (top-1 in the history)."""
    if len(labels) != len(clips_u8) or len(labels) == 0:
        raise BadInput(f"QAT: {len(clips_u8)} clips and {len(labels)} labels")
    if not calib:
        raise BadInput("QAT: no calibration clips")
    net.quantize = True
    opt = torch.optim.AdamW([p for p in net.params.values()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(labels) if cfg.limit is None else min(cfg.limit, len(labels))
    per_epoch = max(1, n // cfg.batch_size)
    total = cfg.epochs * per_epoch
    epoch, step, history = 0, 0, []
    path = Path(out) if out is not None else None
    if path is not None and resume and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("config") != asdict(cfg) or \
                state["qparams"].get("rounding", net.rounding) != net.rounding:
            raise BadInput(f"{path}: a QAT checkpoint of another configuration ({state.get('config')}); "
                           "remove it or pass another --out")
        saved = state["params"]
        if set(saved) != set(net._pkey):  # keyed otherwise (an older run): the same initializers, in order
            if len(saved) != len(net._pkey):
                raise BadInput(f"{path}: a QAT checkpoint of another model ({len(saved)} weight tensors, "
                               f"this one has {len(net._pkey)})")
            saved = dict(zip(net._pkey, saved.values()))
        with torch.no_grad():
            for name, v in saved.items():
                net.params[net._pkey[name]].copy_(v)
        net.load_qparams(state["qparams"])
        opt.load_state_dict(state["opt"])
        epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        log.info("QAT: resumed from %s at epoch %d (step %d)", path, epoch, step)
    else:
        net.calibrate(calib)
    t0 = time.perf_counter()
    while epoch < cfg.epochs:
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(labels))[:n]
        net.train()
        losses, hits, seen = [], 0, 0
        te = time.perf_counter()
        for b in range(per_epoch):
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            x = to_tensor(clips_u8[idx], torch.device("cpu"))
            y = torch.from_numpy(np.asarray(labels[idx], dtype=np.int64))
            for g in opt.param_groups:
                g["lr"] = cosine_lr(cfg.lr, step, total)  # no warm-up: the weights are trained
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            lv = float(loss.detach())
            losses.append(lv)
            hits += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if b % 10 == 0:
                log.info("QAT epoch %d step %d/%d loss %.4f (%.2f s/step)", epoch + 1, b + 1, per_epoch,
                         lv, (time.perf_counter() - te) / (b + 1))
        epoch += 1
        if cfg.recalibrate or epoch == cfg.epochs:
            net.calibrate(calib)
        rec: dict[str, Any] = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)),
                               "train_top1": hits / max(1, seen), "seconds": round(time.perf_counter() - te, 1)}
        if val is not None:
            rec["val_top1"] = evaluate(net, *val)
        history.append(rec)
        log.info("QAT epoch %d: %s", epoch, rec)
        if path is not None:
            _save(path, net, opt, cfg, epoch, step, history)
        if on_epoch is not None:
            on_epoch(rec)
    if cfg.epochs == 0 or (history and not cfg.recalibrate and epoch != cfg.epochs):
        net.calibrate(calib)
    net.eval()
    return QatResult(epoch, step, history, time.perf_counter() - t0)


__all__ = ["QatConfig", "QatResult", "evaluate", "finetune"]
