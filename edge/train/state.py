"""The model of a run and its checkpoints.

    build_model(cfg, num_classes) -> nn.Module (SlimNet for a mutual run)
    load_init(model, path): fine-tuning start from matching tensors of a checkpoint
    save_state(cfg, model, opt, step, classes, history, done, ...) -> Path (atomic)
    load_state(cfg, model, opt) -> (step, history, done)
    ship_checkpoint(src, dst, half) -> Path (weights only)
"""
from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from edge.checkpoint import (as_state_dict, load_checkpoint, load_into, load_model, load_pickle,
                             save_checkpoint)
from edge.core.errors import BadInput
from edge.core.variant import Variant
from edge.models import create_model
from edge.models.slim import SlimNet, load_slim, save_slim
from edge.train.config import TrainConfig

log = logging.getLogger(__name__)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    if cfg.mutual:
        return SlimNet(cfg.model, num_classes, (min(cfg.widths), max(cfg.widths)), max(cfg.resolutions),
                       max(cfg.frames))
    return create_model(Variant(cfg.model, cfg.widths[0], cfg.resolutions[0], cfg.frames[0]), num_classes)


def _weights(model: nn.Module) -> nn.Module:
    """The module whose state dict is the static model's."""
    return getattr(model, "net", model)


def load_init(model: nn.Module, path: str) -> None:
    """Fine-tuning: copy every tensor of checkpoint ``path`` whose key and shape
    match; a classifier of another class count stays freshly initialised."""
    state = as_state_dict(load_pickle(path), path)
    target = _weights(model).state_dict()
    matched = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    if not matched:
        raise BadInput(f"{path}: no tensor matches {type(_weights(model)).__name__} (wrong model?)")
    skipped = sorted(set(target) - set(matched))
    _weights(model).load_state_dict(matched, strict=False)
    log.info("initialised %d of %d tensors from %s; kept fresh: %s", len(matched), len(target), path,
             ", ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else "") if skipped else "none")


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def save_state(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer | None, step: int,
               classes: Sequence[str], history: list[dict[str, Any]], done: bool,
               accuracy: list[dict[str, Any]] | None = None, path: str | Path | None = None,
               half: bool = False) -> Path:
    """Atomic checkpoint of the run so far (``opt`` None: weights only, for shipping)."""
    meta: dict[str, Any] = {"train": cfg.to_json(), "sampling": "uniform", "step": step, "classes": list(classes),
                            "done": done,
                            "history": history, "accuracy": accuracy or [],
                            "command": " ".join(sys.argv) if sys.argv else ""}
    if opt is not None:
        meta["optimizer"] = _cpu(opt.state_dict())
    path = Path(path or cfg.out)
    if isinstance(model, SlimNet):
        return save_slim(path, model, meta, half=half)
    variant = Variant(cfg.model, cfg.widths[0], cfg.resolutions[0], cfg.frames[0])
    net = model
    if half:
        net = copy.deepcopy(model).cpu().half()
    return save_checkpoint(path, net, variant, len(classes), meta)


def load_state(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list, bool]:
    """Restore weights, optimizer and step from ``cfg.out``; (step, history, done)."""
    ckpt = load_checkpoint(cfg.out)
    stored = ckpt.meta.get("train")
    if not isinstance(stored, dict):
        raise BadInput(f"{cfg.out}: not a training checkpoint of edgevid train (no training configuration)")
    diff = cfg.same_run(stored)
    if diff:
        raise BadInput(f"{cfg.out}: --resume with a different configuration ({', '.join(diff)} differ); "
                       "use the original flags or another --out")
    load_into(_weights(model), ckpt.state_dict, cfg.out)
    if "optimizer" in ckpt.meta:
        opt.load_state_dict(ckpt.meta["optimizer"])
    slim_meta = ckpt.meta.get("slim")
    if slim_meta and hasattr(model, "bn_stats"):
        device = next(model.parameters()).device
        model.bn_stats = {c: {k: v.to(device, torch.float32) if v.is_floating_point() else v.to(device)
                              for k, v in s.items()} for c, s in slim_meta.get("bn_stats", {}).items()}
    return int(ckpt.meta.get("step", 0)), list(ckpt.meta.get("history", [])), bool(ckpt.meta.get("done", False))



def ship_checkpoint(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """A weights-only copy of training checkpoint ``src`` (no optimizer state;
    ``half``: float16 tensors, upcast to float32 by every loader) for shipping."""
    meta = dict(load_checkpoint(src).meta)
    meta.pop("optimizer", None)
    if "slim" in meta:
        slim, _ = load_slim(src)
        meta.pop("slim")
        return save_slim(dst, slim, meta, half=half)
    model, ckpt = load_model(src)
    if half:
        model = model.half()
    return save_checkpoint(dst, model, ckpt.variant, ckpt.num_classes, meta)


__all__ = ["build_model", "load_init", "load_state", "save_state", "ship_checkpoint"]
