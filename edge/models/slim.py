"""Slimmable (width-switchable) versions of the zoo models, BN post-statistics, and
``materialize``: one set of weights that runs at any width of a trained range, at
several input resolutions and frame counts (MutualNet, Yang et al. ECCV 2020;
US-Nets, Yu & Huang ICCV 2019).

How a width is run.  ``SlimNet`` holds the full model (the static zoo model at
width 1.0) as ``net``; its state-dict keys are the static model's.  To run width
``w`` on a (B, 3, T, S, S) clip it builds (once, on the ``meta`` device, so it
costs no memory) the *static* model ``create_model(Variant(name, w, S, T))`` as a
skeleton, slices every parameter of ``net`` down to the skeleton's shape, and
calls the skeleton with the sliced tensors (``torch.func.functional_call``).  So
the slimmable net at ``w`` has exactly the shapes of the static model at ``w`` -
by construction, for every family - and ``materialize`` is "build that static
model and copy the sliced tensors into it": the two are the same computation.
Gradients of every slice flow back into the one shared tensor.

Which channels a slice keeps (``INDEX_RULES``): the first ``n_w`` along each
axis, except where a layer concatenates channel groups, whose slice must keep
the same channels the full layer would:

- ``prefix`` (X3D): every axis is a prefix slice.
- ``convnet2d``: the (k x 1) temporal convs run a 1x1 conv over k concatenated
  frame-shifted copies, so their input axis keeps the first ``c_w`` channels of
  each of the k taps.
- ``ghostnet`` (ghost_tsm, ghostnet_100): a Ghost module outputs
  ``[intrinsic (ceil(n/2)), ghost (the rest)]``; the slice keeps the first
  ``ceil(n_w/2)`` intrinsic and the first ``n_w - ceil(n_w/2)`` ghost maps, and
  every consumer of that tensor (depthwise conv, BN, SE, the next Ghost module,
  the shortcut, the residual stream from the stem on) indexes it the same way.

The temporal shifts (TSM) move ``C // 8`` channels at every width, so which
channels are shifted depends on the width; training across widths absorbs it.

BatchNorm: shared affine parameters (sliced like the convolutions) with
*post-statistics* per configuration (width x resolution x frames), as in
US-Nets and MutualNet, not private BN layers per width.  Why: private BN layers
fix the widths to a grid at training time, and BN statistics depend on the
input resolution and frame count as well as the width (MutualNet, sec. 3.3), so
even private-per-width layers would need re-estimation per resolution; the
post-statistics cost a few forward passes per configuration, no training, and
work for any width of the range.  During training BN normalises with batch
statistics; ``calibrate`` then estimates the running mean / variance of every
configuration of the table (cumulative average over calibration clips) and
stores them in ``bn_stats``, keyed by the configuration tag (``w0.5-r112-f8``).
An eval-mode forward or ``materialize`` of a configuration not in the table is
refused (``BadInput``) - calibrate it first.

Checkpoint (``save_slim`` / ``load_slim``): an ordinary edgevid checkpoint of the
full model at (1.0, largest resolution, most frames) whose BN buffers hold that
configuration's post-statistics, so ``edge.checkpoint.load_model`` gives a
working full model; ``meta["slim"]`` holds the width range, the table's
configurations and the post-statistics of all of them.
"""
from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn
from torch.func import functional_call

from edge.core.errors import BadInput
from edge.models.registry import MODELS, create_model, family_spec, model_info
from edge.core.variant import Variant

log = logging.getLogger(__name__)

# Per axis of a tensor: keep the first n entries (int) or these entries (int64 tensor).
Index = tuple["int | torch.Tensor", ...]
IndexPlan = dict[str, Index]

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_CONFIG = re.compile(r"^w(?P<w>[0-9.]+)-r(?P<r>\d+)-f(?P<f>\d+)$")


# ----------------------------------------------------------------------------- configurations

@dataclass(frozen=True, order=True)
class SlimConfig:
    """One runnable configuration: width multiplier x input side x frames.
    Input (B, 3, frames, resolution, resolution)."""

    width: float
    resolution: int
    frames: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", float(self.width))
        if not (math.isfinite(self.width) and 0.0 < self.width <= 1.0):
            raise BadInput(f"width must be in (0, 1], got {self.width}")
        if self.resolution < 1 or self.frames < 1:
            raise BadInput(f"resolution and frames must be positive, got {self.resolution} x {self.frames}")

    @property
    def tag(self) -> str:
        """``w0.5-r112-f8`` (width as Python prints the float)."""
        return f"w{self.width!r}-r{self.resolution}-f{self.frames}"

    @classmethod
    def parse(cls, text: str) -> "SlimConfig":
        m = _CONFIG.match(text.strip())
        if m is None:
            raise BadInput(f"malformed configuration {text!r}; expected wWIDTH-rRES-fFRAMES, e.g. w0.5-r112-f8")
        try:
            width = float(m["w"])
        except ValueError:
            raise BadInput(f"malformed width in configuration {text!r}") from None
        return cls(width, int(m["r"]), int(m["f"]))

    def variant(self, model: str) -> Variant:
        return Variant(model, width=self.width, resolution=self.resolution, frames=self.frames)


def parse_configs(text: str) -> list[SlimConfig]:
    """``"w0.5-r112-f8,w1.0-r128-f8"`` -> configurations, in order, duplicates dropped."""
    out: list[SlimConfig] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        c = SlimConfig.parse(part)
        if c not in out:
            out.append(c)
    if not out:
        raise BadInput(f"no configuration in {text!r}")
    return out


def config_grid(widths: Iterable[float], resolutions: Iterable[int], frames: Iterable[int]) -> list[SlimConfig]:
    """Every width x resolution x frames combination, smallest first."""
    return sorted({SlimConfig(w, r, f) for w in widths for r in resolutions for f in frames})


# ----------------------------------------------------------------------------- index rules

def _prefix_plan(full: nn.Module, narrow: nn.Module) -> IndexPlan:
    return {k: tuple(v.shape) for k, v in narrow.state_dict().items()}


def _convnet2d_plan(full: nn.Module, narrow: nn.Module) -> IndexPlan:
    from edge.models.convnet2d import TemporalConv

    plan = _prefix_plan(full, narrow)
    fm = dict(full.named_modules())
    for name, m in narrow.named_modules():
        if isinstance(m, TemporalConv) and m.kernel > 1:
            c_full, c_w = fm[name].in_channels, m.in_channels
            taps = torch.cat([j * c_full + torch.arange(c_w) for j in range(m.kernel)])
            key = f"{name}.conv.weight"
            plan[key] = (plan[key][0], taps) + plan[key][2:]
    return plan


def ghost_channels(n_full: int, n_w: int) -> torch.Tensor:
    """Which channels of a full Ghost-module output of ``n_full`` channels the
    ``n_w``-channel slice keeps: the first ceil(n_w/2) intrinsic maps, then the
    first n_w - ceil(n_w/2) ghost maps (which start at ceil(n_full/2))."""
    i_full, i_w = math.ceil(n_full / 2), math.ceil(n_w / 2)
    return torch.cat([torch.arange(i_w), i_full + torch.arange(n_w - i_w)])


def _ghostnet_plan(full: nn.Module, narrow: nn.Module) -> IndexPlan:
    from edge.models.ghost import ConvBnAct, GhostBottleneck, GhostNet

    if not isinstance(narrow, GhostNet):
        raise BadInput(f"ghost index rule needs a GhostNet, got {type(narrow).__name__}")
    plan = _prefix_plan(full, narrow)
    fm = dict(full.named_modules())

    def put(key: str, dim: int, idx: torch.Tensor) -> None:
        shape = list(plan[key])
        shape[dim] = idx
        plan[key] = tuple(shape)

    def put_bn(prefix: str, idx: torch.Tensor) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            put(f"{prefix}.{p}", 0, idx)

    stream = ghost_channels(fm["conv_stem"].out_channels, narrow.conv_stem.out_channels)
    put("conv_stem.weight", 0, stream)
    put_bn("bn1", stream)
    for name, m in narrow.named_modules():
        if isinstance(m, GhostBottleneck):
            mid = ghost_channels(fm[name].ghost1.out_chs, m.ghost1.out_chs)
            out = ghost_channels(fm[name].ghost2.out_chs, m.ghost2.out_chs)
            put(f"{name}.ghost1.primary_conv.0.weight", 1, stream)
            if m.conv_dw is not None:
                put(f"{name}.conv_dw.weight", 0, mid)
                put_bn(f"{name}.bn_dw", mid)
            if m.se is not None:
                put(f"{name}.se.conv_reduce.weight", 1, mid)
                put(f"{name}.se.conv_expand.weight", 0, mid)
                put(f"{name}.se.conv_expand.bias", 0, mid)
            put(f"{name}.ghost2.primary_conv.0.weight", 1, mid)
            if len(m.shortcut) > 0:
                put(f"{name}.shortcut.0.weight", 0, stream)
                put_bn(f"{name}.shortcut.1", stream)
                put(f"{name}.shortcut.2.weight", 0, out)
                put(f"{name}.shortcut.2.weight", 1, stream)
                put_bn(f"{name}.shortcut.3", out)
            stream = out
        elif isinstance(m, ConvBnAct):
            put(f"{name}.conv.weight", 1, stream)
    return plan


# name -> rule; a rule maps (full static model, static model at width w) to the
# index of every state-dict entry of the narrow one inside the full one.
INDEX_RULES: dict[str, Callable[[nn.Module, nn.Module], IndexPlan]] = {
    "prefix": _prefix_plan,
    "convnet2d": _convnet2d_plan,
    "ghostnet": _ghostnet_plan,
}

def slimmable() -> dict[str, str]:
    """The slimmable registered models and their ``INDEX_RULES`` rule: every model of a family
    whose FamilySpec names one (gghost is not slimmable: see its spec)."""
    return {name: spec.slim_rule for name, info in MODELS.items()
            if (spec := family_spec(info.family)).slim_rule is not None}


def take(t: torch.Tensor, index: Index) -> torch.Tensor:
    """The slice of ``t`` given by ``index`` (a view where every axis is a prefix)."""
    for d, ix in enumerate(index):
        if isinstance(ix, int):
            if ix != t.shape[d]:
                t = t.narrow(d, 0, ix)
        else:
            t = t.index_select(d, ix)
    return t


def _plan_to(plan: IndexPlan, device: torch.device) -> IndexPlan:
    return {k: tuple(i if isinstance(i, int) else i.to(device) for i in ix) for k, ix in plan.items()}


# ----------------------------------------------------------------------------- the slimmable net

class SlimNet(nn.Module):
    """A zoo model that runs at any width in ``width_range`` with one set of weights.

    ``forward(x, width)``: x (B, 3, T, S, S) -> (B, num_classes) logits of the static
    model at (width, S, T).  Train mode normalises with batch statistics; eval mode
    uses the post-statistics of configuration (width, S, T) from ``bn_stats``.
    ``net`` is the full static model (width 1.0) whose tensors are shared.
    """

    def __init__(self, model: str, num_classes: int, width_range: tuple[float, float] = (0.25, 1.0),
                 resolution: int | None = None, frames: int | None = None) -> None:
        super().__init__()
        rules = slimmable()
        if model not in rules:
            raise BadInput(f"model {model!r} is not slimmable; slimmable models: {', '.join(rules)}")
        self.slim_rule = rules[model]
        lo, hi = (float(w) for w in width_range)
        if not 0.0 < lo <= hi <= 1.0:
            raise BadInput(f"width range must satisfy 0 < min <= max <= 1, got [{lo}, {hi}]")
        info = model_info(model)
        self.model_name = model
        self.num_classes = num_classes
        self.width_range = (lo, hi)
        self.full_variant = Variant(model, 1.0, resolution or info.resolution, frames or info.frames)
        self.net = create_model(self.full_variant, num_classes)
        self.bn_stats: dict[str, dict[str, torch.Tensor]] = {}
        # Per-instance caches (not registered: they hold meta-device skeletons and index plans).
        self._skeletons: dict[tuple[float, int, int], nn.Module] = {}
        self._plans: dict[tuple[float, str], IndexPlan] = {}

    # -- building blocks

    def check_width(self, width: float) -> float:
        lo, hi = self.width_range
        width = float(width)
        if not (lo - 1e-9 <= width <= hi + 1e-9):
            raise BadInput(f"width {width} is outside the trained range [{lo}, {hi}] of this {self.model_name}")
        return width

    def skeleton(self, config: SlimConfig) -> nn.Module:
        """The static model at ``config`` on the meta device (shapes only)."""
        key = (config.width, config.resolution, config.frames)
        if key not in self._skeletons:
            with torch.device("meta"):
                self._skeletons[key] = create_model(config.variant(self.model_name), self.num_classes)
        return self._skeletons[key]

    def plan(self, width: float) -> IndexPlan:
        """Index of every state-dict entry of the width-``width`` model inside ``net``."""
        device = next(self.net.parameters()).device
        key = (width, str(device))
        if key not in self._plans:
            v = self.full_variant
            narrow = self.skeleton(SlimConfig(width, v.resolution, v.frames))
            full_sd = self.net.state_dict()
            narrow_sd = narrow.state_dict()
            if narrow_sd.keys() != full_sd.keys():
                odd = sorted(set(narrow_sd) ^ set(full_sd))[0]
                raise BadInput(f"width {width}: {self.model_name} changes structure at this width ({odd!r} "
                               "exists at one width only); not a slice of the full model")
            for k, t in narrow_sd.items():
                if any(a > b for a, b in zip(t.shape, full_sd[k].shape)):
                    raise BadInput(f"width {width}: {self.model_name} layer {k!r} rounds to "
                                   f"{tuple(t.shape)}, wider than the full model's {tuple(full_sd[k].shape)}; "
                                   "not a slice of the full model")
            full_meta = self.skeleton(SlimConfig(1.0, v.resolution, v.frames))
            self._plans[key] = _plan_to(INDEX_RULES[self.slim_rule](full_meta, narrow), device)
        return self._plans[key]

    def sliced(self, width: float) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of ``net`` sliced to ``width`` (shared storage where possible;
        gradients flow back into ``net``)."""
        plan = self.plan(width)
        tensors = dict(self.net.named_parameters())
        tensors.update(self.net.named_buffers())
        return {k: take(tensors[k], ix) for k, ix in plan.items()}

    def config_of(self, x: torch.Tensor, width: float | None) -> SlimConfig:
        if x.dim() != 5:
            raise BadInput(f"clip of shape {tuple(x.shape)}: expected (B, 3, T, H, W)")
        if x.shape[3] != x.shape[4]:
            raise BadInput(f"clip of shape {tuple(x.shape)}: slimmable models take square crops")
        w = self.width_range[1] if width is None else self.check_width(width)
        return SlimConfig(w, int(x.shape[3]), int(x.shape[2]))

    def stats(self, config: SlimConfig) -> dict[str, torch.Tensor]:
        """BN post-statistics of ``config``; ``BadInput`` if it is not in the table."""
        try:
            return self.bn_stats[config.tag]
        except KeyError:
            table = ", ".join(sorted(self.bn_stats)) or "empty"
            raise BadInput(f"configuration {config.tag} of {self.model_name} is not in the BN post-statistics "
                           f"table ({table}); calibrate it first (edgevid eval --calib CLIPS)") from None

    # -- running

    def forward(self, x: torch.Tensor, width: float | None = None) -> torch.Tensor:
        config = self.config_of(x, width)
        skeleton = self.skeleton(config)
        skeleton.train(self.training)
        tensors = self.sliced(config.width)
        if self.training:  # batch statistics; keep the running-stat updates away from `net`
            for k in tensors:
                if k.rsplit(".", 1)[-1] in _BN_BUFFERS:
                    tensors[k] = tensors[k].detach().clone()
        else:
            tensors.update(self.stats(config))
        return functional_call(skeleton, tensors, (x,))

    @torch.no_grad()
    def calibrate(self, config: SlimConfig, clips: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Estimate BN post-statistics of ``config`` (cumulative average over the
        batches ``clips``, each (B, 3, frames, resolution, resolution), fed to the
        sliced net with batch statistics) and store them in ``bn_stats``."""
        config = SlimConfig(self.check_width(config.width), config.resolution, config.frames)
        skeleton = self.skeleton(config)
        tensors = self.sliced(config.width)
        fresh: dict[str, torch.Tensor] = {}
        for k, t in tensors.items():
            leaf = k.rsplit(".", 1)[-1]
            if leaf == "running_mean":
                fresh[k] = torch.zeros_like(t)
            elif leaf == "running_var":
                fresh[k] = torch.ones_like(t)
            elif leaf == "num_batches_tracked":
                fresh[k] = torch.zeros_like(t)
        tensors.update(fresh)
        bns = [m for m in skeleton.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        skeleton.train()
        for m in skeleton.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        for m in bns:
            m.momentum = None  # cumulative moving average over all batches
        n = 0
        try:
            for x in clips:
                if tuple(x.shape[2:]) != (config.frames, config.resolution, config.resolution):
                    raise BadInput(f"calibration clip of shape {tuple(x.shape)} does not match {config.tag}")
                functional_call(skeleton, tensors, (x,))
                n += 1
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
            skeleton.train(self.training)
        if n == 0:
            raise BadInput(f"no calibration clips for {config.tag}")
        self.bn_stats[config.tag] = {k: v.detach().clone() for k, v in fresh.items()}
        if (config.width, config.resolution, config.frames) == (1.0, self.full_variant.resolution,
                                                                self.full_variant.frames):
            self.net.load_state_dict(self.bn_stats[config.tag], strict=False)  # plain loaders get it too
        return self.bn_stats[config.tag]

    @property
    def full_config(self) -> SlimConfig:
        v = self.full_variant
        return SlimConfig(self.width_range[1], v.resolution, v.frames)

    def table(self) -> list[SlimConfig]:
        """The configurations with post-statistics, smallest first."""
        return sorted(SlimConfig.parse(t) for t in self.bn_stats)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> "SlimNet":  # .to(), .half() ...
        super()._apply(fn, recurse)
        self.bn_stats = {c: {k: fn(v) for k, v in s.items()} for c, s in self.bn_stats.items()}
        self._plans = {}
        return self


def materialize(model: SlimNet, width: float, resolution: int | None = None,
                frames: int | None = None) -> nn.Module:
    """The static zoo model at (width, resolution, frames) - default: the largest
    resolution and frames - holding the sliced weights and that configuration's BN
    post-statistics, in eval mode.  Numerically the slimmable model at that
    configuration; an ordinary ``nn.Module`` for export, pruning and quantization.
    Input (1, 3, frames, resolution, resolution)."""
    v = model.full_variant
    config = SlimConfig(model.check_width(width), resolution or v.resolution, frames or v.frames)
    stats = model.stats(config)
    state = {k: t.detach().clone() for k, t in model.sliced(config.width).items()}
    state.update({k: t.detach().clone() for k, t in stats.items()})
    device = next(model.net.parameters()).device
    static = create_model(config.variant(model.model_name), model.num_classes).to(device)
    static.load_state_dict(state, strict=True)
    return static.eval()


# ----------------------------------------------------------------------------- checkpoints

def save_slim(path: str | Path, model: SlimNet, meta: Mapping[str, Any] | None = None,
              half: bool = False) -> Path:
    """Write ``model`` as an edgevid checkpoint (atomic).  ``half``: store float
    tensors as float16 (loading upcasts them to float32)."""
    from edge.checkpoint import save_checkpoint

    net = copy.deepcopy(model.net).cpu()
    stats = {c: {k: v.detach().cpu() for k, v in s.items()} for c, s in model.bn_stats.items()}
    if half:
        net = net.half()
        stats = {c: {k: v.half() if v.is_floating_point() else v for k, v in s.items()} for c, s in stats.items()}
    slim_meta = {"width_range": list(model.width_range), "bn_stats": stats,
                 "table": [c.tag for c in model.table()], "stored_half": half}
    full = dict(meta or {})
    full["slim"] = slim_meta
    return save_checkpoint(path, net, model.full_variant, model.num_classes, full)


def load_slim(path: str | Path, model: str | None = None) -> tuple[SlimNet, dict[str, Any]]:
    """A ``SlimNet`` (eval mode, float32) and the checkpoint's meta from a file
    written by ``save_slim``; ``BadInput`` for a bad or non-slimmable checkpoint."""
    from edge.checkpoint import load_checkpoint, load_into

    ckpt = load_checkpoint(path)
    if model is not None and model != ckpt.variant.model:
        raise BadInput(f"{path}: checkpoint holds {ckpt.variant.model}, not {model}")
    slim_meta = ckpt.meta.get("slim")
    if not isinstance(slim_meta, Mapping):
        raise BadInput(f"{path}: not a slimmable checkpoint (trained without --mutual)")
    try:
        lo, hi = (float(w) for w in slim_meta["width_range"])
        stats = {str(c): {str(k): v.float() if v.is_floating_point() else v for k, v in s.items()}
                 for c, s in slim_meta["bn_stats"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadInput(f"{path}: malformed slimmable-model metadata") from None
    v = ckpt.variant
    slim = SlimNet(v.model, ckpt.num_classes, (lo, hi), v.resolution, v.frames)
    load_into(slim.net, ckpt.state_dict, path)
    shapes: dict[float, dict[str, torch.Tensor]] = {}  # BN shapes depend on the width only
    for tag, s in stats.items():
        width = slim.check_width(SlimConfig.parse(tag).width)
        if width not in shapes:
            shapes[width] = slim.skeleton(SlimConfig(width, v.resolution, v.frames)).state_dict()
        narrow = shapes[width]
        for k, t in s.items():
            if k not in narrow or tuple(narrow[k].shape) != tuple(t.shape):
                raise BadInput(f"{path}: BN post-statistics of {tag} do not fit the model at {k!r}")
    slim.bn_stats = stats
    return slim.eval(), dict(ckpt.meta)
