"""SlowFast-R50 4x16 (Feichtenhofer et al., "SlowFast Networks for Video
Recognition", ICCV 2019): alpha 8, beta 1/8, a (5,1,1) fusion conv of stride 8 -
built as PyTorchVideo's ``create_slowfast`` builds it with those settings.

One clip in, both pathways inside the graph: the input (B, 3, T, H, W) is the Fast
pathway's clip (T = 32 by default); the Slow pathway takes every ``alpha``-th frame
of it, ``x[:, :, ::8]`` (frames 0, 8, 16, 24), the frames the stride-8 fusion conv is
centred on.  So an artifact has one video input like every other model, and the
pathway sampling is part of the network (``model.input_sampling``, which ``edge.compile``
records in artifact.json ``notes.input_sampling``).  (PyTorchVideo's ``PackPathway`` transform
picks ``linspace(0, T - 1, T / alpha)`` instead - 0, 10, 20, 31 - a different, not
evenly spaced, sampling; feed our model's two tensors to PyTorchVideo's to compare.)

Network (channels slow / fast)::

    blocks.0  stems: 1x7x7 / 5x7x7 conv stride (1,2,2), BN, ReLU, 1x3x3 max pool stride (1,2,2)
              (64 / 8), then fusion: fast -> (5,1,1) conv stride (8,1,1) 8 -> 16, BN, ReLU,
              concatenated to slow (80)
    blocks.1  res2: 3 bottlenecks -> 256 / 32, fused (+64)
    blocks.2  res3: 4 bottlenecks -> 512 / 64, first spatial stride 2, fused (+128)
    blocks.3  res4: 6 bottlenecks -> 1024 / 128, first spatial stride 2, fused (+256)
    blocks.4  res5: 3 bottlenecks -> 2048 / 256, first spatial stride 2
    blocks.5  per pathway AvgPool3d (T_slow, 7, 7) / (T, 7, 7) stride 1, concatenated (2304)
    blocks.6  head: dropout, linear 2304 -> num_classes, mean over what is left   (B, num_classes)

A bottleneck: conv_a 1x1x1 (slow res2/res3) or 3x1x1 (slow res4/res5, every fast
stage) -> BN -> ReLU -> conv_b 1x3x3 (spatial stride in the first block) -> BN ->
ReLU -> conv_c 1x1x1 -> BN, plus the shortcut (strided 1x1x1 conv + BN in the first
block of a stage), ReLU.  The head's pooling windows are cut to what is left of
(T, H, W) below 32 x 224, so the head then pools globally; at 32 x 224 they are
PyTorchVideo's.  Module names are PyTorchVideo's (``blocks.N.multipathway_blocks.P
.res_blocks.M.branch2.conv_a``, ``blocks.N.multipathway_fusion.conv_fast_to_slow``,
``blocks.6.proj``), so its state dicts load unchanged.

Widths: ``width`` multiplies every channel count (slow pathway divisor 8, fast 4).

Complexity (``edgevid models``; multiply-adds, ``torch.utils.flop_counter``, convs and
the classifier; 400 classes): 34,480,216 parameters (PyTorchVideo's 34.48M for this
configuration); 36.10 GMACs at 32 x 256, the paper's 36.1 GFLOPs for SlowFast 4x16
R50 (its Table 2 convention: multiply-adds at a 256 crop); 27.64 at 32 x 224 and
14.10 at the 160-pixel edge configuration.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.common import scale_channels
from edge.models.family import FamilySpec
from edge.models.resnet3d import Bottleneck, ResBlock, ResStage

ALPHA = 8                 # fast frames per slow frame
BETA_INV = 8              # slow channels per fast channel
FUSION_RATIO = 2          # fusion conv: fast channels x 2
FUSION_KERNEL = 5
STAGE_DEPTHS = (3, 4, 6, 3)
SLOW_CONV_A_T = (1, 1, 3, 3)   # temporal kernel of conv_a per stage (fast: 3 everywhere)
HEAD_POOL = (7, 7)


class Stem(nn.Module):
    def __init__(self, c_out: int, kt: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, c_out, (kt, 7, 7), (1, 2, 2), (kt // 2, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(c_out)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


def res_stage(depth: int, c_in: int, c_inner: int, c_out: int, kt: int, stride: int) -> ResStage:
    """``depth`` bottlenecks (conv_a (kt,1,1), conv_b (1,3,3) with spatial ``stride`` in the first)."""
    def block(i: int) -> ResBlock:
        s = stride if i == 0 else 1
        conv_b = nn.Conv3d(c_inner, c_inner, (1, 3, 3), (1, s, s), (0, 1, 1), bias=False)
        c = c_in if i == 0 else c_out
        return ResBlock(c, c_out, Bottleneck(c, c_inner, c_out, conv_b, kt), (1, s, s))

    return ResStage([block(i) for i in range(depth)])


class FuseFastToSlow(nn.Module):
    """fast -> (5,1,1) conv stride (alpha,1,1) -> BN -> ReLU, concatenated to slow on channels."""

    def __init__(self, c_fast: int, c_out: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(c_fast, c_out, (FUSION_KERNEL, 1, 1), (ALPHA, 1, 1),
                                           (FUSION_KERNEL // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(c_out)
        self.activation = nn.ReLU()

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.activation(self.norm(self.conv_fast_to_slow(fast)))], 1)


class Pathways(nn.Module):
    """Both pathways' blocks, then (except after the last stage) the fusion: (slow, fast) -> (slow, fast)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FuseFastToSlow | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow, fast = self.multipathway_blocks[0](slow), self.multipathway_blocks[1](fast)
        if self.multipathway_fusion is not None:
            slow = self.multipathway_fusion(slow, fast)
        return slow, fast


class PoolConcat(nn.Module):
    def __init__(self, slow_pool: tuple[int, int, int], fast_pool: tuple[int, int, int]) -> None:
        super().__init__()
        self.pool = nn.ModuleList([nn.AvgPool3d(slow_pool, 1), nn.AvgPool3d(fast_pool, 1)])

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.pool[0](slow), self.pool[1](fast)], 1)


class Head(nn.Module):
    def __init__(self, c_in: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x.mean(dim=(2, 3, 4))))


class SlowFast(nn.Module):
    """Input (B, 3, frames, resolution, resolution), the Fast clip; output (B, num_classes) logits."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow, fast = x[:, :, ::ALPHA], x
        for block in self.blocks[:5]:
            slow, fast = block(slow, fast)
        return self.blocks[6](self.blocks[5](slow, fast))


def create_slowfast(num_classes: int, frames: int, resolution: int, width: float, dropout: float = 0.5) -> SlowFast:
    """SlowFast-R50 4x16 at ``width``; the head's windows cut to the input (module doc)."""
    if frames < 1 or resolution < 1:
        raise BadInput(f"SlowFast: frames and resolution must be positive, got {frames} x {resolution}")
    slow_ch = partial(scale_channels, width=width, divisor=8)
    fast_ch = partial(scale_channels, width=width, divisor=4)
    s_out, f_out = slow_ch(64), fast_ch(64 // BETA_INV)
    fuse = FUSION_RATIO * f_out
    blocks: list[nn.Module] = [Pathways(Stem(s_out, 1), Stem(f_out, 5), FuseFastToSlow(f_out, fuse))]
    s_in, f_in = s_out + fuse, f_out
    side = (resolution + 1) // 2
    side = (side + 1) // 2  # stem conv and pool
    for i, depth in enumerate(STAGE_DEPTHS):
        base = 256 * 2 ** i
        stride = 1 if i == 0 else 2
        s_out, f_out = slow_ch(base), fast_ch(base // BETA_INV)
        slow = res_stage(depth, s_in, slow_ch(base // 4), s_out, SLOW_CONV_A_T[i], stride)
        fast = res_stage(depth, f_in, fast_ch(base // 4 // BETA_INV), f_out, 3, stride)
        last = i == len(STAGE_DEPTHS) - 1
        fuse = FUSION_RATIO * f_out
        blocks.append(Pathways(slow, fast, None if last else FuseFastToSlow(f_out, fuse)))
        s_in, f_in = s_out + (0 if last else fuse), f_out
        side = (side - 1) // stride + 1
    t_slow = (frames - 1) // ALPHA + 1
    sp = (min(HEAD_POOL[0], side), min(HEAD_POOL[1], side))
    blocks.append(PoolConcat((t_slow, *sp), (frames, *sp)))
    blocks.append(Head(s_in + f_in, num_classes, dropout))
    model = SlowFast(blocks)
    # recorded in artifact.json by edge.compile: which frames of the one input clip each pathway sees
    model.input_sampling = {"fast": f"all {frames} frames",
                            "slow": f"frames {list(range(0, frames, ALPHA))} (every {ALPHA}th, from frame 0)"}
    return model


def slowfast_r50(num_classes: int = 400, frames: int = 32, resolution: int = 224, width: float = 1.0) -> nn.Module:
    """SlowFast-R50 4x16: 32 fast frames (4 slow) at 224; Jetson users run it at a 160 crop."""
    return create_slowfast(num_classes, frames, resolution, width)


# the stems, the fusion convs (their channels are concatenated into the slow pathway), the
# residual streams and the classifier keep their channels
FAMILY = FamilySpec("slowfast", protected=(r"^blocks\.0\.multipathway_blocks\.", r"\.conv_fast_to_slow$",
                                           r"\.conv_c$", r"\.branch1_conv$", r"\.proj$"))
