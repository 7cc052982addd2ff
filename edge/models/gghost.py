"""G-Ghost video net: G-Ghost stages (cheap-feature concat) per frame with temporal shift.

Source: "GhostNets on heterogeneous devices via cheap operations" (Han et al., TPAMI 2022),
reference code huawei-noah/Efficient-AI-Backbones ``g_ghost_pytorch/g_ghost_regnet.py``;
the blocks it shares with GhostNet (TemporalShift, ConvBnAct, SqueezeExcite) are
:mod:`edge.models.ghost`'s.  Clip (B, 3, T, H, W) -> (B, num_classes) logits, 2D operators only.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edge.models.common import scale_channels
from edge.models.family import FamilySpec
from edge.core.errors import BadInput
from edge.models.ghost import TemporalShift, check_builder_args, clip_to_frames

GGHOST_STAGES: tuple[tuple[int, int, int], ...] = ((1, 32, 2), (2, 64, 2), (7, 160, 2), (12, 384, 2))
GGHOST_GROUP_WIDTH = 16
GGHOST_STEM = 32


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
        x = clip_to_frames(x, self.frames)
        x = self.stages(self.stem(x))
        x = self.global_pool(x).reshape(b, t, self.num_features).mean(dim=1)
        return self.fc(self.dropout(x))


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
    check_builder_args("gghost_tsm", num_classes, frames, resolution, width)
    return GGhostNet(GGHOST_STAGES, GGHOST_GROUP_WIDTH, GGHOST_STEM, num_classes=num_classes,
                     frames=frames, width=width)


def resync_gghost(model: nn.Module) -> None:
    """After pruning: ``GGhostNet.num_features`` = the classifier's input features."""
    for m in model.modules():
        if isinstance(m, GGhostNet):
            m.num_features = m.fc.in_features


# stem, everything on the stage stream (split by raw_chs/cheap_chs), the classifier keep their
# channels; the inner width of every RegBottleneck (conv1 -> grouped conv2 -> conv3) is pruned.
# Not slimmable: its G-Ghost stages split channels at a width-dependent point no slice matches.
FAMILY = FamilySpec("gghost", protected=(r"^stem\.", r"\.conv3$", r"\.downsample\.", r"\.cheap\.",
                                         r"\.merge\.4$", r"^fc$"),
                    resync=resync_gghost, pass_through=(TemporalShift,))
