"""Ghost-module nets: image GhostNet-1.0x per frame and GhostNet with temporal shift (the
G-Ghost video net, which reuses these blocks, is :mod:`edge.models.gghost`).

Sources: GhostNet (Han et al., CVPR 2020) and "GhostNets on heterogeneous devices
via cheap operations" (Han et al., TPAMI 2022), reference code
huawei-noah/Efficient-AI-Backbones (``ghostnet_pytorch/ghostnet.py``,
``g_ghost_pytorch/g_ghost_regnet.py``); temporal shift from TSM (Lin et al., ICCV 2019).

Every model takes a clip (B, 3, T, H, W) and returns (B, num_classes) logits.  The
2D backbone runs on the B*T frames; nothing in it is 3D, so every graph exports to
ONNX with standard 2D operators (Conv, BatchNormalization, Relu, HardSigmoid,
GlobalAveragePool, Slice, Concat, Reshape).  ``resolution`` is accepted by every
builder for the registry's sake but does not change the network (global pooling).

Layout follows timm ``models/ghostnet.py``: blocks, model classes, builders.  The
state-dict keys of ``GhostNet`` (``conv_stem``, ``blocks.{stage}.{i}.ghost1...``,
``conv_head``, ``classifier``) are those of the reference code, so ImageNet GhostNet
weights load into ``ghostnet_100`` and ``ghost_tsm`` alike (the shift has no weights).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.common import scale_channels
from edge.models.family import FamilySpec

# GhostNet-1.0x (paper Table 1): per stage, rows of
# (dw kernel, expansion channels, output channels, SE ratio, stride).
GHOSTNET_CFGS: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1),
     (3, 184, 80, 0.0, 1),
     (3, 184, 80, 0.0, 1),
     (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1),
     (5, 960, 160, 0.25, 1),
     (5, 960, 160, 0.0, 1),
     (5, 960, 160, 0.25, 1)),
)

# G-Ghost video net body (G-Ghost-RegNetX-400MF of the reference code): per stage
# (depth, channels, stride); group width 16; stages with depth >= 3 are G-Ghost stages.

_DIVISOR = 4  # GhostNet rounds every channel count to a multiple of 4


# --------------------------------------------------------------------------- blocks

class TemporalShift(nn.Module):
    """Shift ``1/fold_div`` of the channels one frame towards the past and
    ``1/fold_div`` one frame towards the future (TSM), zero at the clip ends.

    (B*T, C, H, W) -> (B*T, C, H, W), with ``T = frames`` fixed at build time.
    Channels [0, fold) of frame t take frame t+1's values, channels [fold, 2*fold)
    take frame t-1's, the rest stay.  Slices and concatenations only (no roll, no
    wraparound), so the ONNX graph is Reshape/Slice/Concat with static shapes.
    """

    def __init__(self, frames: int, fold_div: int = 8) -> None:
        super().__init__()
        self.frames = frames
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt, c, h, w = x.shape
        fold = c // self.fold_div
        if fold == 0:
            return x
        t = self.frames
        v = x.reshape(bt // t, t, c, h, w)
        zeros = torch.zeros_like(v[:, :1, :fold])
        if t > 1:
            from_next = torch.cat([v[:, 1:, :fold], zeros], dim=1)
            from_prev = torch.cat([zeros, v[:, :-1, fold:2 * fold]], dim=1)
        else:
            from_next = from_prev = zeros
        out = torch.cat([from_next, from_prev, v[:, :, 2 * fold:]], dim=2)
        return out.reshape(bt, c, h, w)

    def extra_repr(self) -> str:
        return f"frames={self.frames}, fold_div={self.fold_div}"


class SqueezeExcite(nn.Module):
    """SE with a hard-sigmoid gate (relu6(x + 3) / 6, ONNX ``HardSigmoid``).

    (N, C, H, W) -> (N, C, H, W); the bottleneck has ``C * rd_ratio`` channels
    rounded to a multiple of 4, as in the reference code.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = scale_channels(channels, rd_ratio, _DIVISOR)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, rd, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * self.gate(s)


class ConvBnAct(nn.Module):
    """Conv (k x k, 'same' padding) -> BN -> ReLU.  (N, Cin, H, W) -> (N, Cout, H/s, W/s)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class GhostModule(nn.Module):
    """C-Ghost module: a primary conv makes m = ceil(n / ratio) intrinsic maps, a
    cheap depthwise ``dw_size`` x ``dw_size`` conv makes m * (ratio - 1) ghost maps
    from them; concatenated and cut to n = ``out_chs``.

    (N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, ratio: int = 2,
                 dw_size: int = 3, stride: int = 1, use_act: bool = True) -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_chs),
            nn.ReLU(inplace=True) if use_act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            nn.ReLU(inplace=True) if use_act else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        if out.shape[1] != self.out_chs:  # odd n: one ghost map too many
            out = out[:, :self.out_chs]
        return out


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: [shift] -> ghost module (expand, ReLU) -> [depthwise stride-2
    conv + BN] -> [SE] -> ghost module (project, linear), plus a shortcut (identity,
    or depthwise + BN + pointwise + BN when the shape changes).

    (N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride).  ``shift`` (a
    ``TemporalShift``) sits at the start of the residual branch only, so the
    shortcut carries the unshifted frame (TSM's residual shift).
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3,
                 stride: int = 1, se_ratio: float = 0.0, shift: TemporalShift | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.shift = shift if shift is not None else nn.Identity()
        self.ghost1 = GhostModule(in_chs, mid_chs, use_act=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride,
                                     (dw_kernel_size - 1) // 2, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        else:
            self.conv_dw = None
            self.bn_dw = None
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, use_act=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2,
                          groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(self.shift(x))
        if self.conv_dw is not None:
            y = self.bn_dw(self.conv_dw(y))
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        return y + self.shortcut(x)


# --------------------------------------------------------------------------- models

def clip_to_frames(x: torch.Tensor, frames: int | None) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B*T, 3, H, W), frames of a clip adjacent; checks the clip
    (and T against ``frames`` when the net models time)."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise BadInput(f"clip of shape {tuple(x.shape)}: expected (B, 3, T, H, W)")
    if frames is not None and x.shape[2] != frames:
        raise BadInput(f"clip of {x.shape[2]} frames: this model was built for {frames}")
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class GhostNet(nn.Module):
    """GhostNet applied to each frame of a clip.

    (B, 3, T, H, W) -> (B*T, 3, H, W) -> stem (16 ch, 3x3 s2) -> 16 Ghost
    bottlenecks -> 1x1 conv (960) -> global pool -> 1x1 conv_head (1280) + ReLU ->
    (B, T, 1280) averaged over T -> dropout -> classifier -> (B, num_classes).

    Averaging the 1280-d features before the linear classifier equals averaging the
    per-frame logits, at 1/T of the classifier's cost.  With ``frames`` set, every
    bottleneck starts its residual branch with a ``TemporalShift`` over that many
    frames (the net then needs clips of exactly ``frames`` frames); with ``frames``
    None the frames are independent and any T works.
    """

    def __init__(self, cfgs: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = GHOSTNET_CFGS,
                 num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2,
                 frames: int | None = None) -> None:
        super().__init__()
        self.frames = frames
        self.dropout = nn.Dropout(dropout)
        stem_chs = scale_channels(16, width, _DIVISOR)
        self.conv_stem = nn.Conv2d(3, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        in_chs = stem_chs
        stages: list[nn.Module] = []
        exp_size = 16
        for cfg in cfgs:
            layers = []
            for k, exp_size, c, se_ratio, s in cfg:
                out_chs = scale_channels(c, width, _DIVISOR)
                mid_chs = scale_channels(exp_size, width, _DIVISOR)
                shift = TemporalShift(frames) if frames is not None else None
                layers.append(GhostBottleneck(in_chs, mid_chs, out_chs, k, s, se_ratio, shift))
                in_chs = out_chs
            stages.append(nn.Sequential(*layers))
        final_chs = scale_channels(exp_size, width, _DIVISOR)
        stages.append(nn.Sequential(ConvBnAct(in_chs, final_chs, 1)))
        self.blocks = nn.Sequential(*stages)

        self.num_features = 1280  # fixed at every width, as in the reference code
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(final_chs, self.num_features, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        x = clip_to_frames(x, self.frames)
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = x.reshape(b, t, self.num_features).mean(dim=1)
        return self.classifier(self.dropout(x))


# --------------------------------------------------------------------------- builders

def check_builder_args(name: str, num_classes: int, frames: int, resolution: int, width: float) -> None:
    if num_classes < 1:
        raise BadInput(f"{name}: num_classes {num_classes} must be >= 1")
    if frames < 1:
        raise BadInput(f"{name}: frames {frames} must be >= 1")
    if resolution < 32:
        raise BadInput(f"{name}: resolution {resolution} must be >= 32 (stride-32 backbone)")
    if not 0 < width <= 4:
        raise BadInput(f"{name}: width {width} must be in (0, 4]")


def ghostnet_100(num_classes: int = 1000, frames: int = 1, resolution: int = 224,
                 width: float = 1.0) -> nn.Module:
    """Image GhostNet-1.0x on each frame, per-frame features averaged over T (any T;
    ``frames`` is only the default input).  At width 1.0: 5.18M params, 0.141 GMACs
    at 1 x 224 x 224 (paper: 5.2M, 141M)."""
    check_builder_args("ghostnet_100", num_classes, frames, resolution, width)
    return GhostNet(GHOSTNET_CFGS, num_classes=num_classes, width=width)


def ghost_tsm(num_classes: int = 400, frames: int = 8, resolution: int = 160,
              width: float = 1.0) -> nn.Module:
    """GhostNet-1.0x per frame with a temporal shift (1/8 forward, 1/8 backward) at
    the start of every Ghost bottleneck's residual branch; temporal average pooling.
    Clips must have exactly ``frames`` frames."""
    check_builder_args("ghost_tsm", num_classes, frames, resolution, width)
    return GhostNet(GHOSTNET_CFGS, num_classes=num_classes, width=width, frames=frames)


def resync_ghost(model: nn.Module) -> None:
    """Recompute what the ghost nets derive from channel counts after pruning shrank their convs
    (torch-pruning updates only torch's own modules).

    GhostModule: ``out_chs`` = primary + cheap channels (torch-pruning removes a primary channel
    together with its depthwise ghost map, so the concat stays even).  GhostNet:
    ``num_features`` = the classifier's input features (the forward reshapes to it).
    """
    for m in model.modules():
        if isinstance(m, GhostModule):
            m.out_chs = m.primary_conv[0].out_channels + m.cheap_operation[0].out_channels
        elif isinstance(m, GhostNet):
            m.num_features = m.classifier.in_features


# stem, the ghost module that ends a block (residual stream, shift input), shortcuts, the stage-9
# conv, the classifier keep their channels; ghost1 (expansion), SE and head are pruned.  Groups
# rooted in definition order (see edge.prune.structured).  TemporalShift's per-fold slices and
# concatenations blow up torch-pruning's graph (7 GB and minutes on ghost_tsm): a leaf for it.
GHOST_FAMILY = FamilySpec("ghost", protected=(r"^conv_stem$", r"\.ghost2\.", r"\.shortcut\.", r"^blocks\.9\.",
                                              r"^classifier$"),
                          slim_rule="ghostnet", roots_in_definition_order=True, resync=resync_ghost,
                          pass_through=(TemporalShift,))
