"""Top-1 per configuration (width x resolution x frames) on labelled clips, with
parameters and multiply-adds, and a single-frame baseline.

Every configuration is evaluated as the deployable model: for a slimmable
checkpoint ``materialize`` gives the static model at that configuration (sliced
weights, that configuration's BN post-statistics), so the figures are those of
what ``compile`` would export.  Clips are read through ``calib_data.load_clips``
at each configuration's own frames and crop (uniform temporal sampling over the
whole video, the evaluation transform) - not resampled from another size.

Single-frame baseline (``top1_1frame``): the same model fed the clip's centre
frame repeated ``frames`` times - everything it can tell from appearance alone.
On the synthetic motion set, whose classes come in time-reversed pairs, that is
at most about 50%; a model that models time beats it.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from calib_data.labelled import read_labelled
from calib_data.tensor import to_tensor
from edge.core.errors import BadInput
from edge.models.slim import SlimConfig

log = logging.getLogger(__name__)

ModelFor = Callable[[SlimConfig], nn.Module]


@dataclass(frozen=True)
class ConfigResult:
    """One row of the accuracy table."""

    config: str
    width: float
    resolution: int
    frames: int
    top1: float
    top1_1frame: float | None
    clips: int
    params: int | None
    gflops: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def models_of(model: nn.Module) -> ModelFor:
    """Configuration -> static eval-mode model: ``materialize`` for a ``SlimNet``,
    the model itself for a static one."""
    from edge.models.slim import SlimNet, materialize

    if isinstance(model, SlimNet):
        return lambda c: materialize(model, c.width, c.resolution, c.frames)
    return lambda c: model.eval()


def single_frame(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> the centre frame repeated T times (same shape)."""
    t = x.shape[2]
    return x[:, :, t // 2:t // 2 + 1].expand(-1, -1, t, -1, -1).contiguous()


@torch.no_grad()
def top1(model: nn.Module, clips: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
         frozen: bool = False) -> float:
    """Share of clips whose arg-max logit is the label."""
    correct = 0
    for i in range(0, len(labels), batch_size):
        x = to_tensor(clips[i:i + batch_size], device)
        if frozen:
            x = single_frame(x)
        pred = model(x).argmax(1).cpu().numpy()
        correct += int((pred == labels[i:i + batch_size]).sum())
    return correct / max(1, len(labels))


def evaluate(model_for: ModelFor, data: str | Path, configs: Sequence[SlimConfig], batch_size: int = 16,
             device: torch.device | str = "cpu", classes: Sequence[str] | None = None, limit: int | None = None,
             single_frame: bool = True, count: bool = True,
             clips_cache: dict | None = None) -> list[ConfigResult]:
    """Top-1 of ``model_for(config)`` on ``data`` for every configuration (clips read
    once per frames x resolution, and kept in ``clips_cache`` when given), in the order given."""
    from edge.flops import complexity

    if not configs:
        raise BadInput("no configuration to evaluate")
    device = torch.device(device)
    rows: dict[SlimConfig, ConfigResult] = {}
    for f, r in sorted({(c.frames, c.resolution) for c in configs}):
        if clips_cache is not None and (f, r) in clips_cache:
            clips, labels = clips_cache[(f, r)]
        else:
            clips, labels = read_labelled(data, f, r, limit, classes)
            if clips_cache is not None:
                clips_cache[(f, r)] = (clips, labels)
        for c in (c for c in configs if (c.frames, c.resolution) == (f, r)):
            model = model_for(c)
            params = gflops = None
            if count:
                cx = complexity(copy.deepcopy(model).cpu().float(), (1, 3, f, r, r))
                params, gflops = cx.params, cx.gflops
            model = model.to(device).eval()
            acc = top1(model, clips, labels, batch_size, device)
            acc1 = top1(model, clips, labels, batch_size, device, frozen=True) if single_frame else None
            rows[c] = ConfigResult(c.tag, c.width, r, f, acc, acc1, len(labels), params, gflops)
            log.info("%s: top-1 %.3f%s on %d clips", c.tag, acc,
                     "" if acc1 is None else f" (single frame {acc1:.3f})", len(labels))
    return [rows[c] for c in configs]


def format_table(rows: Sequence[dict[str, Any]], chance: float | None = None) -> str:
    """Text table of ``ConfigResult.to_json()`` rows."""
    header = ("config", "params", "GFLOPs", "top-1", "single-frame top-1", "clips")
    cells = [header] + [(r["config"], "-" if r["params"] is None else f"{r['params'] / 1e6:.2f}M",
                         "-" if r["gflops"] is None else f"{r['gflops']:.3f}", f"{100 * r['top1']:.1f}%",
                         "-" if r["top1_1frame"] is None else f"{100 * r['top1_1frame']:.1f}%", str(r["clips"]))
                        for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if chance is not None:
        lines.append(f"chance: {100 * chance:.1f}%")
    return "\n".join(lines)


def evaluate_checkpoint(ckpt: str | Path, model: str, data: str | Path, configs: Sequence[SlimConfig] | None = None,
                        batch_size: int = 16, limit: int | None = None, single_frame: bool = True,
                        calib: str | Path | None = None, calib_clips: int = 128,
                        device: str | None = None) -> list[ConfigResult]:
    """The accuracy table of a checkpoint written by ``edgevid train``.

    Slimmable checkpoint: ``configs`` default to its table; a configuration not in
    the table is calibrated on ``calib`` (any clips) when given, else refused.
    Static checkpoint (pruned ones too, rebuilt from their channel spec): ``configs``
    default to its own variant and must keep its width.
    """
    from edge.checkpoint import load_checkpoint, load_model
    from edge.models.slim import load_slim

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meta = load_checkpoint(ckpt)
    if meta.variant.model != model:
        raise BadInput(f"{ckpt}: checkpoint holds {meta.variant.model}, not {model}")
    classes = meta.meta.get("classes") or None
    if "slim" in meta.meta:
        slim, _ = load_slim(ckpt, model)
        slim.to(dev)
        configs = list(configs or slim.table())
        for c in configs:
            slim.check_width(c.width)
            if c.tag not in slim.bn_stats and calib is not None:
                slim.calibrate(c, _calib_batches(calib, c, calib_clips, batch_size, dev))
        return evaluate(models_of(slim), data, configs, batch_size, dev, classes, limit, single_frame)
    v = meta.variant
    configs = list(configs or [SlimConfig(v.width, v.resolution, v.frames)])
    for c in configs:
        if abs(c.width - v.width) > 1e-9:
            raise BadInput(f"{ckpt}: a static checkpoint runs at its own width {v.width} only, not {c.width} "
                           "(train with --mutual for a slimmable one)")
    prune = float(meta.meta["prune"]["ratio"]) if meta.meta.get("prune") else 0.0

    def build(c: SlimConfig) -> nn.Module:
        if prune:  # a pruned checkpoint: rebuilt from its channel spec
            from edge.prune.spec import load_pruned

            return load_pruned(ckpt, c.variant(model).with_(prune=prune))
        return load_model(ckpt, c.variant(model))[0]

    return evaluate(build, data, configs, batch_size, dev, classes, limit, single_frame)


def _calib_batches(path: str | Path, config: SlimConfig, n: int, batch_size: int,
                   device: torch.device) -> Any:
    from calib_data.loader import load_clips

    clips = [c for c, _ in load_clips(path, frames=config.frames, resolution=config.resolution, mode="uniform",
                                      limit=n)]
    for i in range(0, len(clips), batch_size):
        yield torch.from_numpy(np.concatenate(clips[i:i + batch_size])).to(device)
