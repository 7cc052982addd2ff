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

import contextlib
import copy
import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.core.errors import BadInput
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

def _prefix_importance() -> Any:
    """Keep the lowest-index channels: the score falls with the channel index.  For
    slimmable (MutualNet) checkpoints, whose width-w sub-network is the first channels of
    every layer, this keeps the channels training ranked first."""
    tp = _tp()

    class PrefixImportance(tp.importance.Importance):
        @torch.no_grad()
        def __call__(self, group: Any, **_: Any) -> torch.Tensor:
            _, idxs = group[0]
            return -torch.as_tensor(list(idxs), dtype=torch.float32)

    return PrefixImportance()


# Families whose pruning groups are rooted in definition order (see _roots_in_definition_order).
ROOTS_IN_DEFINITION_ORDER = ("ghost",)

CRITERIA: dict[str, Callable[[], Any]] = {
    "l1": lambda: _tp().importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: _tp().importance.GroupMagnitudeImportance(p=2),
    "bn": lambda: _tp().importance.BNScaleImportance(),
    "prefix": _prefix_importance,
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
    if family in ROOTS_IN_DEFINITION_ORDER:
        _roots_in_definition_order(pruner, m)
    with torch.no_grad():
        pruner.step()
    resync(m)
    return m


def _roots_in_definition_order(pruner: Any, model: nn.Module) -> None:
    """Make torch-pruning pick each group's root in the order the model defines its
    modules, not in its backward-trace order.

    Why (ghost family): torch-pruning roots a group at the first unvisited conv of
    ``DG.module2node``, which is filled backwards from the output.  In a Ghost
    bottleneck that is the consumer of the ghost module's concat - ``conv_dw`` (stride-2
    blocks) or ``se.conv_expand`` (SE blocks) - whose 2m channels are m tied pairs
    (primary map j and its cheap ghost map j, at concat indices j and m + j).  Ranked
    as 2m free channels, the pruner's chosen indices expand through the depthwise tie to
    more than the ratio allows, and the group is skipped: those bottlenecks (the 9
    stride-2 or SE ones of GhostNet's 16) were never pruned, capping the FLOPs cut near
    36% (ghost_tsm, ghostnet_100 at 64 x 64).  Rooted
    at ``ghost1.primary_conv`` (definition order), the group has the m independent
    channels and every bottleneck prunes."""
    order = {mod: i for i, mod in enumerate(model.modules())}
    dg = pruner.DG
    dg.module2node = dict(sorted(dg.module2node.items(), key=lambda kv: order.get(kv[0], len(order))))


def prune_model(model: nn.Module, family: str, input_shape: tuple[int, ...], opts: PruneOptions,
                reference_macs: int | None = None, name: str | None = None) -> PruneResult:
    """Prune ``model`` (not modified) so its multiply-adds at ``input_shape`` fall by
    ``opts.ratio`` relative to ``reference_macs`` (default: the model's own).

    Searches the channel ratio (secant steps); raises ``BadInput`` when the target cannot be reached
    within ``TOLERANCE`` with the protected layers kept, naming the model (``name``, default its
    class) and the largest cut reachable (every prunable layer at ``MAX_CHANNEL_RATIO``).
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
        who = name or type(model).__name__
        if c < target:
            c_max = max([q[1] for q in pts if q[0] >= MAX_CHANNEL_RATIO - 1e-9] or [cut(MAX_CHANNEL_RATIO)[0]])
            raise BadInput(f"{who}: FLOPs cut {target:.2f} unreachable - the max reachable cut is {c_max:.3f} "
                           f"(channel ratio {MAX_CHANNEL_RATIO} on every prunable layer; the {family} layers "
                           f"matching {', '.join(PROTECTED[family])} keep their channels)")
        raise BadInput(f"{who}: FLOPs cut {target:.2f} unreachable within {TOLERANCE}: the nearest is {c:.3f} "
                       f"(channel ratio {p:.3f}); try --round-to 1 or another ratio")
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


def load_teacher(path: str | Path, variant: Any) -> nn.Module:
    """The unpruned model of checkpoint ``path`` at ``variant`` (eval mode).

    A slimmable (MutualNet) checkpoint is materialised at the variant's width,
    resolution and frames, with that configuration's BN post-statistics
    (``BadInput`` when the configuration is not in its table); a static one is
    loaded as ``load_pruned`` does."""
    from edge.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if "slim" not in ck.meta:
        return load_pruned(path, variant)
    from edge.models.slim import load_slim, materialize

    slim, _ = load_slim(path, variant.model)
    return materialize(slim, variant.width, variant.resolution, variant.frames).eval()


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
        import math

        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, total - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def clips_to_input(clips_u8: Any) -> torch.Tensor:
    """uint8 (B, 3, T, S, S) (numpy, may be a memory map) -> normalised float32, as
    ``edgevid eval`` feeds models."""
    import numpy as np

    from edge.evaluate import MEAN, STD

    return (torch.from_numpy(np.array(clips_u8, copy=True)).float() / 255.0 - MEAN) / STD


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
            model(clips_to_input(clips_u8[i:i + batch]))
    for m, mo in zip(bns, momenta):
        m.momentum = mo
    return model.eval()


@torch.no_grad()
def logits_of(model: nn.Module, clips_u8: Any, batch: int = 16) -> torch.Tensor:
    """Eval-mode logits (N, K) of uint8 clips (N, 3, T, S, S)."""
    model.eval()
    return torch.cat([model(clips_to_input(clips_u8[i:i + batch])) for i in range(0, len(clips_u8), batch)])


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
            loss = kd_loss(student(clips_to_input(clips_u8[idx])), teacher_logits[idx], labels[idx],
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


# ----------------------------------------------------------------------------- the job

def prune_job(model_name: str, ckpt: str | None, ratio: float, out: str | Path, data: str | None = None,
              epochs: int = 0, criterion: str = "l1", global_: bool = False, round_to: int | None = None,
              iterative: int = 1, frames: int = 0, resolution: int = 0, limit: int | None = None,
              lr: float = 1e-3, recal_clips: int = 0) -> dict[str, Any]:
    """What ``edgevid prune`` does: load (or build), prune to ``ratio`` FLOPs cut in
    ``iterative`` steps, each followed by re-estimating BN statistics on ``recal_clips``
    clips of ``data`` (0: not) and a KD fine-tune of ``epochs``; save the pruned checkpoint."""
    from edge.checkpoint import save_checkpoint
    from edge.models import create_model
    from edge.models.registry import model_info
    from edge.core.variant import Variant

    opts = PruneOptions(ratio, criterion, global_, round_to)
    if iterative < 1:
        raise BadInput(f"--iterative must be >= 1, got {iterative}")
    if epochs < 0:
        raise BadInput(f"--epochs must be >= 0, got {epochs}")
    if recal_clips < 0:
        raise BadInput(f"--recal-clips must be >= 0, got {recal_clips}")
    variant = Variant(model_name, frames=frames, resolution=resolution)
    family = model_info(model_name).family
    if ckpt:
        from edge.checkpoint import clip_sampling, load_checkpoint

        ck = load_checkpoint(ckpt)
        if ck.variant.model != model_name:
            raise BadInput(f"{ckpt}: checkpoint holds {ck.variant.model}, not {model_name}")
        if ck.meta.get("prune"):
            raise BadInput(f"{ckpt}: already pruned; prune the original checkpoint")
        variant = variant.with_(width=ck.variant.width)
        num_classes = ck.num_classes
        teacher = load_teacher(ckpt, variant)
        classes = ck.meta.get("classes")
        sampling = clip_sampling(ck.meta, ckpt)
    else:
        num_classes = model_info(model_name).num_classes
        teacher = create_model(variant).eval()
        classes, sampling = None, "stride"
    shape = variant.input_shape
    x = y = None
    if epochs > 0:
        x, y = load_labelled(data or _shipped(), variant.frames, variant.resolution, limit)
    recal = None
    if recal_clips > 0:
        from edge.evaluate import read_labelled

        recal, _ = read_labelled(data or _shipped(), variant.frames, variant.resolution, recal_clips)
    ref = complexity(teacher, shape)
    model, losses = teacher, []
    spec: Mapping[str, Any] = {}
    res = None
    for k in range(1, iterative + 1):
        step_ratio = 1 - (1 - ratio) ** (k / iterative) if iterative > 1 else ratio
        res = prune_model(model, family, shape, PruneOptions(step_ratio, criterion, global_, round_to),
                          reference_macs=ref.macs, name=model_name)
        model = res.model
        if recal is not None:
            recalibrate_bn(model, recal)
        if epochs > 0:
            with fast_depthwise3d(model):
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
               "recal_clips": 0 if recal is None else len(recal), "losses": losses}
    meta: dict[str, Any] = {"prune": {**{k: v for k, v in summary.items() if k != "losses"}, "spec": spec},
                            "sampling": sampling}  # clips of the pruned net are read as its source's were
    if ckpt:
        meta["prune"]["source"] = str(ckpt)
    if classes:
        meta["classes"] = list(classes)
    save_checkpoint(out, model, variant.with_(prune=ratio), num_classes, meta)
    summary["out"] = str(out)
    return summary


def _shipped() -> str:
    from calib_data import shipped_manifest

    return str(shipped_manifest())
