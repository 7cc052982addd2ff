"""X3D (Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
Recognition", CVPR 2020), built as PyTorchVideo's ``create_x3d`` builds it.

Network, input (B, 3, T, H, W) with T = ``frames`` and H = W = ``resolution``::

    blocks.0  stem   1x3x3 conv stride (1,2,2) 3->24, 5x1x1 depthwise conv, BN, ReLU   (B, 24, T, H/2, W/2)
    blocks.1  res2   3  bottlenecks, 24 ch (inner 54),  first stride (1,2,2)          (B, 24, T, H/4, W/4)
    blocks.2  res3   5  bottlenecks, 48 ch (inner 108)                                (B, 48, T, H/8, W/8)
    blocks.3  res4   11 bottlenecks, 96 ch (inner 216)                                (B, 96, T, H/16, W/16)
    blocks.4  res5   7  bottlenecks, 192 ch (inner 432)                               (B, 192, T, H/32, W/32)
    blocks.5  head   1x1x1 conv 192->432, BN, ReLU, AvgPool3d (T, H/32, W/32),
                     1x1x1 conv 432->2048, ReLU, dropout, linear 2048->num_classes     (B, num_classes)

(H/32 etc. round up.)  A bottleneck is 1x1x1 conv -> BN -> ReLU -> 3x3x3 depthwise
conv -> BN -> [squeeze-excitation, every other block starting with the first] ->
Swish -> 1x1x1 conv -> BN, added to the shortcut (a strided 1x1x1 conv, plus BN
where the channel count changes, in the first block of a stage), then ReLU.
Stage depths are ceil(depth_factor * (1, 2, 5, 3)): 3/5/11/7 at 2.2 (XS, S, M),
5/10/25/15 at 5.0 (L).  XS, S and M are the same network at different inputs.

Differences from PyTorchVideo, all of which keep the numbers identical:

* The head returns logits: PyTorchVideo's head ends in a softmax (its
  ``head_activation``); apply it yourself if you want probabilities.
* The head averages over (T, H, W) before the final linear layer, PyTorchVideo
  after it.  The two are equal (the layer is affine); ours keeps the classifier a
  2-D (B, 2048) x (2048, C) product, which every target supports.
* Module names mirror PyTorchVideo's module tree, so its state dicts load with
  one renaming (``edge.convert.pytorchvideo_key``): PyTorchVideo calls the
  stem's spatial 1x3x3 conv ``blocks.0.conv.conv_t`` and its temporal 5x1x1 conv
  ``blocks.0.conv.conv_xy`` (the names are swapped in its ``create_x3d_stem``);
  here ``conv_xy`` is the spatial and ``conv_t`` the temporal conv.  All other
  keys are identical.

Widths: ``width`` multiplies every channel count (stem, stage, inner, SE, head)
with :func:`edge.models.common.scale_channels` and divisor
:data:`CHANNEL_DIVISOR`; width 1.0 is the published model exactly.  The module
tree is the same at every width, so a narrower model is a channel slice of the
full one.

Complexity (``edgevid models``): multiply-adds of one clip counted by
``torch.utils.flop_counter`` (its FLOPs / 2): convolutions (including the SE
1x1x1 convs) and the classifier; not BN, activations, pooling or the SE
multiply.  400 classes:

======  =============  ==========  ===========  ========================
model   frames x crop  params      GMACs        published (paper table)
======  =============  ==========  ===========  ========================
X3D-XS  4 x 160        3,794,274   0.6053       3.8M, 0.60
X3D-S   13 x 160       3,794,274   1.9629       3.8M, 1.96
X3D-M   16 x 224       3,794,274   4.7325       3.8M, 4.73
X3D-L   16 x 312       6,153,384   18.3677      6.2M, 18.37
======  =============  ==========  ===========  ========================

The paper's figures use this convention (multiply-adds at the frames x crop of
the table, one clip).  XS is 0.9% above its published 0.60 only through
rounding: all but 0.0017 G of the count scales with frames, and S's published
1.96 x 4/13 = 0.603.  PyTorchVideo's model zoo quotes 0.91 / 2.96 / 6.72 /
26.64 GFLOPs for the same networks: per view at its test-time crop (short side
182 / 182 / 256 / 356, 3 spatial x 10 temporal views), counted by PySlowFast.
Those are not comparable with the paper's table.  At those crops this counter
gives 0.839 / 2.722 / 6.181 / 24.764 (0.853 / 2.768 / 6.288 / 25.136 if BN
outputs are added); the rest of that gap is not traced.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.common import Swish, scale_channels
from edge.models.family import FamilySpec

# Channel counts of the published model (PyTorchVideo width_factor 2.0).
STEM_CHANNELS = 24
STAGE_CHANNELS = (24, 48, 96, 192)
BASE_DEPTHS = (1, 2, 5, 3)
BOTTLENECK_FACTOR = 2.25
SE_RATIO = 1.0 / 16
HEAD_CHANNELS = 2048
# Every scaled channel count is a multiple of this (as PyTorchVideo's round_width).
CHANNEL_DIVISOR = 8


# ----------------------------------------------------------------------------- blocks

class SqueezeExcitation(nn.Module):
    """x * sigmoid(conv(relu(conv(mean_THW(x))))); (B, C, T, H, W) -> same shape.

    ``block`` mirrors fvcore's ``SqueezeExcitation`` (keys ``block.0``, ``block.2``).
    """

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, kernel_size=1, bias=True),
            nn.ReLU(),
            nn.Conv3d(reduced, channels, kernel_size=1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class StemConv(nn.Module):
    """Spatial 1x3x3 conv (stride 1,2,2) then temporal 5x1x1 depthwise conv.

    (B, 3, T, H, W) -> (B, C, T, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(in_channels, out_channels, kernel_size=(1, 3, 3), stride=(1, 2, 2),
                                 padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(out_channels, out_channels, kernel_size=(5, 1, 1), padding=(2, 0, 0),
                                groups=out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_t(self.conv_xy(x))


class Stem(nn.Module):
    """``conv`` (StemConv) -> BN -> ReLU; (B, 3, T, H, W) -> (B, C, T, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = StemConv(in_channels, out_channels)
        self.norm = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1x1 conv, BN, ReLU -> 3x3x3 depthwise conv (stride ``stride``), BN, [SE], Swish
    -> 1x1x1 conv, BN.  (B, C_in, T, H, W) -> (B, C_out, T, H/s, W/s).

    ``norm_b`` is ``Sequential(BN, SE or Identity)`` as in PyTorchVideo.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: int, se_channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, kernel_size=3, stride=(1, stride, stride), padding=1,
                                groups=dim_inner, bias=False)
        se: nn.Module = SqueezeExcitation(dim_inner, se_channels) if se_channels > 0 else nn.Identity()
        self.norm_b = nn.Sequential(nn.BatchNorm3d(dim_inner), se)
        self.act_b = Swish()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + branch2(x)).  The shortcut is the identity, or a 1x1x1 conv
    of stride (1, s, s) (``branch1_conv``), followed by BN (``branch1_norm``) when the
    channel count changes.  (B, C_in, T, H, W) -> (B, C_out, T, H/s, W/s)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: int, se_channels: int,
                 shortcut_norm: bool) -> None:
        super().__init__()
        self.branch1_conv = (nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=(1, stride, stride), bias=False)
                             if shortcut_norm or stride > 1 else None)
        self.branch1_norm = nn.BatchNorm3d(dim_out) if shortcut_norm else None
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, stride, se_channels)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``res_blocks`` in sequence; (B, C_in, T, H, W) -> (B, C_out, T, H/s, W/s)."""

    def __init__(self, res_blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(res_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """1x1x1 conv, BN, ReLU -> AvgPool3d(kernel, stride 1) -> 1x1x1 conv, ReLU.

    (B, C_in, T, h, w) -> (B, C_out, T - kt + 1, h - kh + 1, w - kw + 1); (B, C_out, 1, 1, 1)
    at the input size the kernel was built for.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, pool_kernel: tuple[int, int, int]) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.pre_norm = nn.BatchNorm3d(dim_inner)
        self.pre_act = nn.ReLU()
        self.pool = nn.AvgPool3d(pool_kernel, stride=1)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.post_act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.pre_act(self.pre_norm(self.pre_conv(x))))
        return self.post_act(self.post_conv(x))


class Head(nn.Module):
    """ProjectedPool -> dropout -> mean over (T, H, W) -> linear.
    (B, C, T, h, w) -> (B, num_classes) logits."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, num_classes: int,
                 pool_kernel: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        self.pool = ProjectedPool(dim_in, dim_inner, dim_out, pool_kernel)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_out, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(x))
        return self.proj(x.mean(dim=(2, 3, 4)))


# ----------------------------------------------------------------------------- model

class X3D(nn.Module):
    """``blocks``: stem, res2..res5, head.  (B, 3, frames, resolution, resolution) ->
    (B, num_classes) logits.  The head's pooling kernel is fixed at build time."""

    def __init__(self, blocks: Sequence[nn.Module], num_classes: int, frames: int, resolution: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.num_classes = num_classes
        self.frames = frames
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


# ----------------------------------------------------------------------------- builders

def se_channels(dim_inner: int) -> int:
    """SE bottleneck width: PyTorchVideo's ``round_width(dim_inner, 1/16)`` (a multiple
    of 8, at least 8): 54 -> 8, 108 -> 8, 216 -> 16, 432 -> 32."""
    width = dim_inner * SE_RATIO
    out = max(8, int(width + 4) // 8 * 8)
    return out + 8 if out < 0.9 * width else out


def create_res_stage(depth: int, dim_in: int, dim_inner: int, dim_out: int, se: int, width: float) -> ResStage:
    """``depth`` blocks at base channel counts scaled by ``width``; the first block has
    spatial stride 2, SE on blocks 0, 2, 4, ...; (B, C_in, T, H, W) -> (B, C_out, T, H/2, W/2)."""
    c_in, c_inner, c_out = (scale_channels(c, width, CHANNEL_DIVISOR) for c in (dim_in, dim_inner, dim_out))
    c_se = scale_channels(se, width, CHANNEL_DIVISOR)
    blocks = [ResBlock(c_in if i == 0 else c_out, c_inner, c_out, stride=2 if i == 0 else 1,
                       se_channels=c_se if i % 2 == 0 else 0, shortcut_norm=(i == 0 and dim_in != dim_out))
              for i in range(depth)]
    return ResStage(blocks)


def create_head(dim_in: int, dim_inner: int, num_classes: int, frames: int, resolution: int, width: float,
                dropout: float = 0.5) -> Head:
    """Head pooling over (frames, ceil(resolution/32), ceil(resolution/32)) as in
    PyTorchVideo's ``create_x3d``."""
    pool = (frames, math.ceil(resolution / 32), math.ceil(resolution / 32))
    return Head(scale_channels(dim_in, width, CHANNEL_DIVISOR), scale_channels(dim_inner, width, CHANNEL_DIVISOR),
                scale_channels(HEAD_CHANNELS, width, CHANNEL_DIVISOR), num_classes, pool, dropout)


def create_x3d(num_classes: int, frames: int, resolution: int, width: float, depth_factor: float) -> X3D:
    """X3D with stage depths ceil(depth_factor * (1, 2, 5, 3)).

    Input (B, 3, frames, resolution, resolution); output (B, num_classes) logits.
    """
    if frames < 1 or resolution < 1:
        raise BadInput(f"X3D: frames and resolution must be positive, got {frames} x {resolution}")
    blocks: list[nn.Module] = [Stem(3, scale_channels(STEM_CHANNELS, width, CHANNEL_DIVISOR))]
    dim_in = STEM_CHANNELS
    for base_depth, dim_out in zip(BASE_DEPTHS, STAGE_CHANNELS):
        dim_inner = int(BOTTLENECK_FACTOR * dim_out)
        blocks.append(create_res_stage(math.ceil(depth_factor * base_depth), dim_in, dim_inner, dim_out,
                                       se_channels(dim_inner), width))
        dim_in = dim_out
    blocks.append(create_head(dim_in, dim_inner, num_classes, frames, resolution, width))
    return X3D(blocks, num_classes, frames, resolution)


def x3d_xs(num_classes: int = 400, frames: int = 4, resolution: int = 160, width: float = 1.0) -> nn.Module:
    """X3D-XS: 4 x 160, depth factor 2.2."""
    return create_x3d(num_classes, frames, resolution, width, depth_factor=2.2)


def x3d_s(num_classes: int = 400, frames: int = 13, resolution: int = 160, width: float = 1.0) -> nn.Module:
    """X3D-S: 13 x 160, depth factor 2.2."""
    return create_x3d(num_classes, frames, resolution, width, depth_factor=2.2)


def x3d_m(num_classes: int = 400, frames: int = 16, resolution: int = 224, width: float = 1.0) -> nn.Module:
    """X3D-M: 16 x 224, depth factor 2.2."""
    return create_x3d(num_classes, frames, resolution, width, depth_factor=2.2)


def x3d_l(num_classes: int = 400, frames: int = 16, resolution: int = 312, width: float = 1.0) -> nn.Module:
    """X3D-L: 16 x 312, depth factor 5.0."""
    return create_x3d(num_classes, frames, resolution, width, depth_factor=5.0)


# stem (conv_xy, conv_t), the residual stream (conv_c, branch1), the classifier keep their channels
FAMILY = FamilySpec("x3d", protected=(r"^blocks\.0\.", r"\.conv_c$", r"\.branch1_conv$", r"\.proj$"),
                    slim_rule="prefix")
