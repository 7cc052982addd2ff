"""Structured channel pruning (torch-pruning's dependency graph) to a FLOPs target.

``prune_model`` removes whole channels (smaller weight tensors) until the
multiply-adds of one clip fall by ``ratio`` (within ``TOLERANCE``): it searches
torch-pruning's per-layer channel ratio and keeps the one whose FLOPs cut is
closest to the target.  Layers that must keep their channel count (stem,
classifier, and per family the layers that feed a channel-slicing operator
torch-pruning cannot trace: temporal shift, G-Ghost splits, the residual stream)
are listed in ``PROTECTED`` as module-path patterns.

A pruned model is described by ``PruneSpec``: for every module whose integer
attributes changed (``out_channels``, ``groups``, ``num_features``, ...) the new
values.  The spec and the state dict's shapes rebuild the pruned model from
``create_model(variant)`` alone (``rebuild``), so a pruned checkpoint loads
without the original and without unpickling modules.

Input of every model: (B, 3, frames, resolution, resolution) float32; output
(B, num_classes) logits; pruning changes neither.
"""
from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.errors import BadInput
from edge.flops import Complexity, complexity

log = logging.getLogger(__name__)

TOLERANCE = 0.05  # |achieved FLOPs cut - target| allowed
SEARCH_STEPS = 6
SEARCH_TOL = 0.01
MAX_CHANNEL_RATIO = 0.95

# Module-path patterns (re.search) whose output channels are never pruned, per family.
PROTECTED: dict[str, tuple[str, ...]] = {
    # stem (conv_xy, conv_t), the residual stream (conv_c, branch1), the classifier
    "x3d": (r"^blocks\.0\.", r"\.conv_c$", r"\.branch1_conv$", r"\.proj$"),
    # stem, the ghost module that ends a block (residual stream, shift input), shortcuts,
    # the stage-9 conv, the classifier; ghost1 (expansion), SE and head are pruned
    "ghost": (r"^conv_stem$", r"\.ghost2\.", r"\.shortcut\.", r"^blocks\.9\.", r"^classifier$"),
    # stem, everything on the stage stream (split by raw_chs/cheap_chs), the classifier;
    # the inner width of every RegBottleneck (conv1 -> grouped conv2 -> conv3) is pruned
    "gghost": (r"^stem\.", r"\.conv3$", r"\.downsample\.", r"\.cheap\.", r"\.merge\.4$", r"^fc$"),
    # stem, every block.project (shift input / residual stream), the classifier
    "convnet2d": (r"^stem\.", r"\.project$", r"^fc$"),
}

CRITERIA: dict[str, Callable[[], Any]] = {
    "l1": lambda: _tp().importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: _tp().importance.GroupMagnitudeImportance(p=2),
    "bn": lambda: _tp().importance.BNScaleImportance(),
}

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm)
_HANDLED = _PRUNABLE + (nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.Identity, nn.Dropout,
                        nn.Sequential, nn.ModuleList, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                        nn.AdaptiveAvgPool3d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool2d, nn.MaxPool3d, nn.Softmax,
                        nn.Flatten)


def _tp() -> Any:
    import torch_pruning

    return torch_pruning


@dataclass(frozen=True)
class PruneOptions:
    """How to prune: FLOPs-cut target ``ratio`` in [0, 1), importance criterion,
    global (one ranking over all layers) or uniform ratio, channel rounding."""

    ratio: float
    criterion: str = "l1"
    global_: bool = False
    round_to: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.ratio) < 1.0):
            raise BadInput(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.criterion not in CRITERIA:
            raise BadInput(f"--criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if self.round_to is not None and self.round_to < 1:
            raise BadInput(f"--round-to must be a positive integer, got {self.round_to}")


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    before: Complexity
    after: Complexity
    channel_ratio: float
    spec: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flops_cut(self) -> float:
        return 1.0 - self.after.macs / self.before.macs


# ----------------------------------------------------------------------------- graph fixes

def resync(model: nn.Module) -> None:
    """Recompute attributes our modules derive from channel counts, after torch-pruning
    shrank their convs (it updates only torch's own modules).

    GhostModule: ``out_chs`` = primary + cheap channels (torch-pruning removes a
    primary channel together with its depthwise ghost map, so the concat stays even).
    GhostNet / GGhostNet: ``num_features`` = the classifier's input features (the
    forward reshapes to it).
    """
    from edge.models.ghost import GGhostNet, GhostModule, GhostNet

    for m in model.modules():
        if isinstance(m, GhostModule):
            m.out_chs = m.primary_conv[0].out_channels + m.cheap_operation[0].out_channels
        elif isinstance(m, GhostNet):
            m.num_features = m.classifier.in_features
        elif isinstance(m, GGhostNet):
            m.num_features = m.fc.in_features


def _customized_pruners() -> dict[type, Any]:
    """Our channel-wise, weightless modules that torch-pruning should treat as leaves
    (not trace): the ghost nets' TemporalShift, whose per-fold slices and
    concatenations blow up its graph (7 GB and minutes on ghost_tsm).  Its input is
    protected, so the pruner only ever passes through it."""
    from edge.models.ghost import TemporalShift

    tp = _tp()

    class PassThrough(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: nn.Module) -> None:
            return None

        def get_in_channels(self, layer: nn.Module) -> None:
            return None

    return {TemporalShift: PassThrough()}


def protected_layers(model: nn.Module, family: str) -> list[nn.Module]:
    """Modules whose output channels stay (see ``PROTECTED``)."""
    if family not in PROTECTED:
        raise BadInput(f"model family {family!r}: the pruner has no protected-layer list for it "
                       f"(known: {', '.join(PROTECTED)})")
    pats = [re.compile(p) for p in PROTECTED[family]]
    return [m for name, m in model.named_modules()
            if isinstance(m, _PRUNABLE) and any(p.search(name) for p in pats)]


def check_supported(model: nn.Module) -> None:
    """Refuse models holding layer types the pruner does not know (named)."""
    from edge.models import common, convnet2d, ghost, x3d  # noqa: F401  (our own blocks are handled)

    ours = ("edge.models.",)
    for name, m in model.named_modules():
        if isinstance(m, _HANDLED) or type(m).__module__.startswith(ours) or name == "":
            continue
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention, nn.ConvTranspose1d, nn.ConvTranspose2d,
                          nn.ConvTranspose3d, nn.GroupNorm, nn.LayerNorm)) or any(
                True for _ in m.parameters(recurse=False)):
            raise BadInput(f"layer {name!r} ({type(m).__name__}): the pruner cannot handle this layer type")


# ----------------------------------------------------------------------------- pruning

def _prune_once(model: nn.Module, example: torch.Tensor, family: str, opts: PruneOptions,
                channel_ratio: float) -> nn.Module:
    """A pruned deep copy of ``model`` at torch-pruning ``channel_ratio``."""
    tp = _tp()
    m = copy.deepcopy(model).eval()
    if channel_ratio <= 0:
        return m
    pruner = tp.pruner.MetaPruner(
        m, example, importance=CRITERIA[opts.criterion](), global_pruning=opts.global_,
        pruning_ratio=channel_ratio, max_pruning_ratio=MAX_CHANNEL_RATIO,
        ignored_layers=protected_layers(m, family), round_to=opts.round_to,
        customized_pruners=_customized_pruners())
    with torch.no_grad():
        pruner.step()
    resync(m)
    return m


def prune_model(model: nn.Module, family: str, input_shape: tuple[int, ...], opts: PruneOptions,
                reference_macs: int | None = None) -> PruneResult:
    """Prune ``model`` (not modified) so its multiply-adds at ``input_shape`` fall by
    ``opts.ratio`` relative to ``reference_macs`` (default: the model's own).

    Searches the channel ratio (secant steps); raises ``BadInput`` when the target cannot be reached
    within ``TOLERANCE`` with the protected layers kept.
    """
    check_supported(model)
    model = model.eval()
    before = complexity(model, input_shape)
    ref = reference_macs or before.macs
    target = opts.ratio
    example = torch.zeros((1,) + tuple(input_shape[1:]))
    if target == 0 or 1 - before.macs / ref >= target:
        m = copy.deepcopy(model)
        return PruneResult(m, before, before, 0.0, spec_of(m, model))

    def cut(p: float) -> tuple[float, nn.Module]:
        try:
            pm = _prune_once(model, example, family, opts, p)
            return 1.0 - complexity(pm, input_shape).macs / ref, pm
        except (RuntimeError, IndexError, ValueError) as e:
            raise BadInput(f"pruning failed at channel ratio {p:.3f}: {str(e).splitlines()[0]}") from None

    # FLOPs cut grows smoothly with the channel ratio (about linearly here): secant steps
    # from (0, 0), each a full prune + count, usually 2-3 of them.
    pts = [(0.0, 0.0)]
    best: tuple[float, float, nn.Module] | None = None
    p = target
    for _ in range(SEARCH_STEPS):
        c, pm = cut(p)
        if best is None or abs(c - target) < abs(best[0] - target):
            best = (c, p, pm)
        if abs(c - target) < SEARCH_TOL:
            break
        pts.append((p, c))
        lo = max((q for q in pts if q[1] < target), key=lambda q: q[1], default=(0.0, 0.0))
        hi = min((q for q in pts if q[1] >= target), key=lambda q: q[1], default=None)
        if hi is None:  # extrapolate from the two highest points
            (p0, c0), (p1, c1) = sorted(pts, key=lambda q: q[1])[-2:]
            p = min(MAX_CHANNEL_RATIO, p1 + (target - c1) * (p1 - p0) / max(c1 - c0, 1e-6))
        else:
            p = lo[0] + (target - lo[1]) * (hi[0] - lo[0]) / max(hi[1] - lo[1], 1e-6)
        if any(abs(p - q[0]) < 1e-4 for q in pts):
            break
    assert best is not None
    c, p, pm = best
    if abs(c - target) > TOLERANCE:
        raise BadInput(f"FLOPs cut {target:.2f} unreachable: best {c:.3f} (channel ratio {p:.3f}) with "
                       f"{family} stem/classifier/stream layers protected")
    _check_runs(pm, example)
    after = complexity(pm, input_shape)
    log.info("pruned %s: channel ratio %.3f, MACs %.3fG -> %.3fG (cut %.3f)", family, p, before.gflops,
             after.gflops, 1 - after.macs / ref)
    return PruneResult(pm, before, after, p, spec_of(pm, model))


def _check_runs(model: nn.Module, example: torch.Tensor) -> None:
    with torch.no_grad():
        out = model(example)
    if not torch.isfinite(out).all():
        raise BadInput("pruned model gives non-finite logits")


# ----------------------------------------------------------------------------- spec / rebuild

def _plain(v: Any) -> bool:
    return isinstance(v, (int, bool)) or (isinstance(v, tuple) and all(isinstance(x, int) for x in v))


def spec_of(pruned: nn.Module, original: nn.Module) -> dict[str, dict[str, Any]]:
    """{module path: {attribute: new value}} for the integer attributes pruning changed."""
    orig = dict(original.named_modules())
    spec: dict[str, dict[str, Any]] = {}
    for name, m in pruned.named_modules():
        o = orig.get(name)
        if o is None:
            continue
        changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(m).items()
                   if not k.startswith("_") and _plain(v) and vars(o).get(k) != v}
        if changed:
            spec[name] = changed
    return spec


def rebuild(model: nn.Module, spec: Mapping[str, Mapping[str, Any]],
            state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """Shrink a freshly built ``model`` in place to ``spec`` and the shapes of ``state``,
    then load ``state`` (strict).  ``where`` names the source in errors."""
    from edge.checkpoint import load_into

    modules = dict(model.named_modules())
    for name, attrs in spec.items():
        if name not in modules:
            raise BadInput(f"{where}: pruned architecture names module {name!r}, not in the model")
        for k, v in attrs.items():
            setattr(modules[name], k, tuple(v) if isinstance(v, list) else v)
    for key, t in state.items():
        path, _, leaf = key.rpartition(".")
        m = modules.get(path)
        if m is None:
            continue  # load_into names it
        if leaf in m._parameters and m._parameters[leaf] is not None and m._parameters[leaf].shape != t.shape:
            m._parameters[leaf] = nn.Parameter(torch.empty(t.shape, dtype=t.dtype))
        elif leaf in m._buffers and m._buffers[leaf] is not None and m._buffers[leaf].shape != t.shape:
            m._buffers[leaf] = torch.empty(t.shape, dtype=t.dtype)
    return load_into(model, state, where)


def load_pruned(path: str | Path, variant: Any) -> nn.Module:
    """The pruned model of checkpoint ``path`` for ``variant`` (its prune ratio must
    match the checkpoint's); works on unpruned checkpoints when ``variant.prune == 0``."""
    from edge.checkpoint import load_checkpoint
    from edge.models import create_model

    ck = load_checkpoint(path)
    if variant.model != ck.variant.model:
        raise BadInput(f"{path}: checkpoint holds {ck.variant.model}, not {variant.model}")
    info = ck.meta.get("prune")
    have = float(info["ratio"]) if info else 0.0
    if abs(have - variant.prune) > 1e-6:
        raise BadInput(f"{path}: checkpoint is pruned at ratio {have}, the variant asks for {variant.prune}")
    if variant.width != ck.variant.width:
        raise BadInput(f"{path}: checkpoint width {ck.variant.width}, the variant asks for {variant.width}")
    model = create_model(variant.with_(prune=0.0), num_classes=ck.num_classes)
    return rebuild(model, info["spec"] if info else {}, ck.state_dict, str(path)).eval()


# ----------------------------------------------------------------------------- fine-tune (KD)

def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0,
            alpha: float = 0.5) -> torch.Tensor:
    """alpha * CE(labels) + (1 - alpha) * T^2 KL(teacher_T || student_T); logits (B, K)."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1),
                    reduction="batchmean") * temperature ** 2
    return alpha * F.cross_entropy(student, labels) + (1 - alpha) * soft


def load_labelled(data: str | Path, frames: int, resolution: int, limit: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """All labelled clips of ``data``: (N, 3, frames, res, res) float32 and (N,) int64."""
    import numpy as np

    from calib_data.loader import load_clips

    xs, ys = [], []
    for clip, label in load_clips(data, frames, resolution, limit=limit):
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


# ----------------------------------------------------------------------------- the job

def prune_job(model_name: str, ckpt: str | None, ratio: float, out: str | Path, data: str | None = None,
              epochs: int = 0, criterion: str = "l1", global_: bool = False, round_to: int | None = None,
              iterative: int = 1, frames: int = 0, resolution: int = 0, limit: int | None = None,
              lr: float = 1e-3) -> dict[str, Any]:
    """What ``edgevid prune`` does: load (or build), prune to ``ratio`` FLOPs cut in
    ``iterative`` steps with KD fine-tune after each, save the pruned checkpoint."""
    from edge.checkpoint import save_checkpoint
    from edge.models import create_model
    from edge.models.registry import model_info
    from edge.variant import Variant

    opts = PruneOptions(ratio, criterion, global_, round_to)
    if iterative < 1:
        raise BadInput(f"--iterative must be >= 1, got {iterative}")
    if epochs < 0:
        raise BadInput(f"--epochs must be >= 0, got {epochs}")
    variant = Variant(model_name, frames=frames, resolution=resolution)
    family = model_info(model_name).family
    if ckpt:
        from edge.checkpoint import load_checkpoint

        ck = load_checkpoint(ckpt)
        if ck.variant.model != model_name:
            raise BadInput(f"{ckpt}: checkpoint holds {ck.variant.model}, not {model_name}")
        if ck.meta.get("prune"):
            raise BadInput(f"{ckpt}: already pruned; prune the original checkpoint")
        variant = variant.with_(width=ck.variant.width)
        num_classes = ck.num_classes
        teacher = load_pruned(ckpt, variant)
    else:
        num_classes = model_info(model_name).num_classes
        teacher = create_model(variant).eval()
    shape = variant.input_shape
    x = y = None
    if epochs > 0:
        x, y = load_labelled(data or _shipped(), variant.frames, variant.resolution, limit)
    ref = complexity(teacher, shape)
    model, losses = teacher, []
    spec: Mapping[str, Any] = {}
    res = None
    for k in range(1, iterative + 1):
        step_ratio = 1 - (1 - ratio) ** (k / iterative) if iterative > 1 else ratio
        res = prune_model(model, family, shape, PruneOptions(step_ratio, criterion, global_, round_to),
                          reference_macs=ref.macs)
        model = res.model
        if epochs > 0:
            losses += finetune_kd(model, teacher, x, y, epochs, lr=lr)
        model.eval()
    assert res is not None
    spec = spec_of(model, teacher)
    after = complexity(model, shape)
    summary = {"model": model_name, "ratio": ratio, "criterion": criterion, "global": global_,
               "round_to": round_to, "iterative": iterative, "epochs": epochs, "input_shape": list(shape),
               "params_before": ref.params, "params_after": after.params,
               "gflops_before": ref.gflops, "gflops_after": after.gflops,
               "flops_cut": 1 - after.macs / ref.macs, "channel_ratio": res.channel_ratio,
               "losses": losses}
    meta = {"prune": {**{k: v for k, v in summary.items() if k != "losses"}, "spec": spec}}
    save_checkpoint(out, model, variant.with_(prune=ratio), num_classes, meta)
    summary["out"] = str(out)
    return summary


def _shipped() -> str:
    from calib_data import shipped_manifest

    return str(shipped_manifest())
