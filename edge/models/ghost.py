"""Ghost-module nets: image GhostNet-1.0x per frame, GhostNet with temporal shift,
and a video net of G-Ghost stages.

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
GGHOST_STAGES: tuple[tuple[int, int, int], ...] = ((1, 32, 2), (2, 64, 2), (7, 160, 2), (12, 384, 2))
GGHOST_GROUP_WIDTH = 16
GGHOST_STEM = 32

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


class RegBottleneck(nn.Module):
    """RegNetX block (bottleneck ratio 1): [shift] -> 1x1 conv-BN-ReLU -> 3x3 group
    conv (stride, groups of ``group_width`` channels)-BN-ReLU -> 1x1 conv-BN, plus
    shortcut (identity, or 1x1 stride conv + BN), ReLU.

    (N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, group_width: int = 8,
                 shift: TemporalShift | None = None) -> None:
        super().__init__()
        groups = out_chs // min(out_chs, group_width)
        self.shift = shift if shift is not None else nn.Identity()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = nn.Conv2d(out_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_chs))
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(self.shift(x))))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.downsample(x))


class GGhostStage(nn.Module):
    """G-Ghost stage (TPAMI 2022, GPU-efficient G-Ghost; reference
    ``g_ghost_regnet.py:Stage``), ``depth`` >= 3 blocks in all.

    The first block (stride, ``out_chs`` channels) feeds two paths:

    - deep path: its first ``raw_chs`` channels go through ``depth - 2`` blocks at
      ``raw_chs`` channels (group width 3/4 of the stage's);
    - cheap path: its other ``cheap_chs = out_chs - raw_chs`` channels (about
      ``cheap_ratio`` of them) go through one 1x1 conv + BN, plus the "mix" term
      (global pool of the first block's and each deep block's output -> 1x1 conv ->
      BN -> ReLU -> 1x1 conv -> BN, broadcast over H, W), ReLU.

    The two are concatenated (deep first) and pass the last block.
    (N, in_chs, H, W) -> (N, out_chs, H / stride, W / stride).
    """

    def __init__(self, in_chs: int, out_chs: int, depth: int, stride: int = 2,
                 group_width: int = 8, cheap_ratio: float = 0.5, frames: int | None = None) -> None:
        super().__init__()
        if depth < 3:
            raise BadInput(f"G-Ghost stage depth {depth}: needs at least 3 blocks")

        def shift() -> TemporalShift | None:
            return TemporalShift(frames) if frames is not None else None

        deep_gw = max(1, int(group_width * 0.75))
        raw = int(out_chs * (1 - cheap_ratio) / deep_gw) * deep_gw
        if not 0 < raw < out_chs:
            raise BadInput(f"G-Ghost stage of {out_chs} channels, cheap ratio {cheap_ratio}: "
                           f"no channels left for the deep or the cheap path")
        self.raw_chs = raw
        self.cheap_chs = out_chs - raw
        self.base = RegBottleneck(in_chs, out_chs, stride, group_width, shift())
        self.layers = nn.Sequential(*(RegBottleneck(raw, raw, 1, deep_gw, shift())
                                      for _ in range(depth - 2)))
        self.cheap = nn.Sequential(nn.Conv2d(self.cheap_chs, self.cheap_chs, 1, bias=False),
                                   nn.BatchNorm2d(self.cheap_chs))
        self.merge = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_chs + raw * (depth - 2), self.cheap_chs, 1, bias=False),
            nn.BatchNorm2d(self.cheap_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.cheap_chs, self.cheap_chs, 1, bias=False),
            nn.BatchNorm2d(self.cheap_chs),
        )
        self.cheap_relu = nn.ReLU(inplace=True)
        self.end = RegBottleneck(out_chs, out_chs, 1, group_width, shift())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.base(x)
        feats = [x0]
        deep = x0[:, :self.raw_chs]
        for block in self.layers:
            deep = block(deep)
            feats.append(deep)
        mix = self.merge(torch.cat(feats, dim=1))
        cheap = self.cheap_relu(self.cheap(x0[:, self.raw_chs:]) + mix)
        return self.end(torch.cat([deep, cheap], dim=1))


# --------------------------------------------------------------------------- models

def _frames_to_batch(x: torch.Tensor, frames: int | None) -> torch.Tensor:
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
        x = _frames_to_batch(x, self.frames)
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = x.reshape(b, t, self.num_features).mean(dim=1)
        return self.classifier(self.dropout(x))


class GGhostNet(nn.Module):
    """Video net of RegNetX-style stages, G-Ghost stages where depth >= 3, with a
    ``TemporalShift`` over ``frames`` frames at the start of every block's residual
    branch (the cheap path has none) and temporal average pooling at the head.

    (B, 3, T=frames, H, W) -> (B*T, 3, H, W) -> stem (3x3 s2) -> stages -> global
    pool -> (B, T, C) averaged over T -> dropout -> fc -> (B, num_classes).
    """

    def __init__(self, stages: tuple[tuple[int, int, int], ...] = GGHOST_STAGES,
                 group_width: int = GGHOST_GROUP_WIDTH, stem_chs: int = GGHOST_STEM,
                 num_classes: int = 400, frames: int = 8, width: float = 1.0,
                 cheap_ratio: float = 0.5, dropout: float = 0.2) -> None:
        super().__init__()
        self.frames = frames
        stem = scale_channels(stem_chs, width, group_width)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        in_chs = stem
        layers: list[nn.Module] = []
        for depth, chs, stride in stages:
            out_chs = scale_channels(chs, width, group_width)
            if depth >= 3:
                layers.append(GGhostStage(in_chs, out_chs, depth, stride, group_width, cheap_ratio, frames))
            else:
                blocks = [RegBottleneck(in_chs if i == 0 else out_chs, out_chs, stride if i == 0 else 1,
                                        group_width, TemporalShift(frames)) for i in range(depth)]
                layers.append(nn.Sequential(*blocks))
            in_chs = out_chs
        self.stages = nn.Sequential(*layers)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_chs, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        x = _frames_to_batch(x, self.frames)
        x = self.stages(self.stem(x))
        x = self.global_pool(x).reshape(b, t, self.num_features).mean(dim=1)
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------- builders

def _check_args(name: str, num_classes: int, frames: int, resolution: int, width: float) -> None:
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
    _check_args("ghostnet_100", num_classes, frames, resolution, width)
    return GhostNet(GHOSTNET_CFGS, num_classes=num_classes, width=width)


def ghost_tsm(num_classes: int = 400, frames: int = 8, resolution: int = 160,
              width: float = 1.0) -> nn.Module:
    """GhostNet-1.0x per frame with a temporal shift (1/8 forward, 1/8 backward) at
    the start of every Ghost bottleneck's residual branch; temporal average pooling.
    Clips must have exactly ``frames`` frames."""
    _check_args("ghost_tsm", num_classes, frames, resolution, width)
    return GhostNet(GHOSTNET_CFGS, num_classes=num_classes, width=width, frames=frames)


def gghost_tsm(num_classes: int = 400, frames: int = 8, resolution: int = 160,
               width: float = 1.0) -> nn.Module:
    """G-Ghost video net with temporal shift in every block; temporal average pooling.

    Channel plan at width 1.0 (the G-Ghost-RegNetX-400MF body of the reference code;
    group width 16; at other widths every stage's channels are rounded to a multiple
    of 16, the group width):

    ===== ====== ===== =================================================================
    stage stride depth channels
    ===== ====== ===== =================================================================
    stem  2      -     32
    s1    2      1     32 (plain block)
    s2    2      2     64 (plain blocks)
    s3    2      7     160: first block 160 -> 72 deep channels through 5 blocks (group
                       width 12) + 88 cheap channels (1x1 conv + mix); concat 160 -> last
    s4    2      12    384: first block 384 -> 192 deep through 10 blocks + 192 cheap
    ===== ====== ===== =================================================================

    then global pool, temporal mean and fc.  2.65M params and 0.90 GMACs at 8 x 160
    (400 classes).  Clips must have exactly ``frames`` frames.
    """
    _check_args("gghost_tsm", num_classes, frames, resolution, width)
    return GGhostNet(GGHOST_STAGES, GGHOST_GROUP_WIDTH, GGHOST_STEM, num_classes=num_classes,
                     frames=frames, width=width)
