"""R(2+1)D (Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
Recognition", CVPR 2018): R(2+1)D-50 built as PyTorchVideo's ``create_r2plus1d``
builds it, and R(2+1)D-18, the paper's basic-block network, with torchvision's
``r2plus1d_18`` module tree (its state dicts load unchanged).

Network, input (B, 3, T, H, W)::

    blocks.0  stem  1x7x7 conv stride (1,2,2) 3->64, BN, ReLU (no pool)     (B, 64, T, H/2, W/2)
    blocks.1  res2  3 bottlenecks -> 256,  first stride (1,2,2)             (B, 256, T, H/4, W/4)
    blocks.2  res3  4 bottlenecks -> 512,  first stride (1,2,2)             (B, 512, T, H/8, W/8)
    blocks.3  res4  6 bottlenecks -> 1024, first stride (2,2,2)             (B, 1024, T/2, H/16, W/16)
    blocks.4  res5  3 bottlenecks -> 2048, first stride (2,2,2)             (B, 2048, T/4, H/32, W/32)
    blocks.5  head  AvgPool3d (4,7,7) stride 1, mean over what is left, dropout,
                    linear 2048 -> num_classes                              (B, num_classes)

(T/2 etc. round up.)  A bottleneck: 1x1x1 conv (inner = out/4) -> BN -> ReLU ->
(2+1)D conv -> BN -> ReLU -> 1x1x1 conv -> BN, added to the shortcut (a strided
1x1x1 conv + BN in the first block of a stage), then ReLU.  The (2+1)D conv is
PyTorchVideo's: a (3,1,1) temporal conv (stride t) -> BN -> ReLU -> a (1,3,3)
spatial conv (stride s), inner width = the bottleneck's inner width (the paper's
M_i rule is for its basic-block R(2+1)D-18/34, not this bottleneck net).

Differences from PyTorchVideo, all of which keep the numbers identical:

* The head returns logits (PyTorchVideo's ends in a softmax) and averages before
  the linear layer (PyTorchVideo after it; equal, the layer is affine).
* The head's pooling window is cut to what is left of (T, H, W) when the input is
  shorter than 16 frames or smaller than 224 pixels, so the head then pools
  globally; at 16 x 224 it is PyTorchVideo's (4, 7, 7) window exactly.

Module names are PyTorchVideo's (``blocks.N.res_blocks.M.branch2.conv_b.conv_t``,
...), so its state dicts load unchanged (``edgevid convert-ckpt --from pytorchvideo
--model r2plus1d_r50``).

Widths: ``width`` multiplies every channel count (divisor 8); 1.0 is the published model.

Complexity (``edgevid models``; multiply-adds of one clip, ``torch.utils.flop_counter``,
convs and the classifier; 400 classes): 28,107,600 parameters (PyTorchVideo's zoo:
28.11M); 57.53 GMACs at 16 x 224 and 75.15 at 16 x 256, where PyTorchVideo's zoo
quotes 76.45 GFLOPs per view at its 256 test crop (1.7% above ours; its counter,
fvcore, also counts BN and pooling - the split is not confirmed here).

R(2+1)D-18: stem (1,7,7) conv 3->45, BN, ReLU, (3,1,1) conv 45->64, BN, ReLU; four
stages of two basic blocks (64, 128, 256, 512 channels; the first block of stages
2-4 strides 2 in T, H and W); global average pool, linear.  A basic block is two
(2+1)D convs - (1,3,3) conv -> BN -> ReLU -> (3,1,1) conv, inner width the paper's
M_i = floor(27 N_in N_out / (9 N_in + 3 N_out)) - each followed by BN, ReLU after
the first and after the residual sum.  400 classes: 31,505,325 parameters and
40.52 GMACs at 16 x 112, both equal to torchvision's figures for ``r2plus1d_18``
(31.5M, 40.52 GFLOPS); 20.26 GMACs at the 8 x 112 edge configuration.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.common import scale_channels
from edge.models.family import FamilySpec
from edge.models.resnet3d import Bottleneck, ResBlock, ResStage

CHANNEL_DIVISOR = 8
STEM_CHANNELS = 64
STAGE_DEPTHS = (3, 4, 6, 3)
STAGE_CHANNELS = (256, 512, 1024, 2048)
TEMPORAL_STRIDES = (1, 1, 2, 2)
HEAD_POOL = (4, 7, 7)


class Stem(nn.Module):
    """1x7x7 conv stride (1,2,2), BN, ReLU: (B, 3, T, H, W) -> (B, C, T, H/2, W/2)."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, c_out, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(c_out)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class Conv2plus1d(nn.Module):
    """(3,1,1) conv stride (t,1,1) -> BN -> ReLU -> (1,3,3) conv stride (1,s,s)."""

    def __init__(self, channels: int, t_stride: int, s_stride: int) -> None:
        super().__init__()
        self.conv_t = nn.Conv3d(channels, channels, (3, 1, 1), (t_stride, 1, 1), (1, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(channels)
        self.activation = nn.ReLU()
        self.conv_xy = nn.Conv3d(channels, channels, (1, 3, 3), (1, s_stride, s_stride), (0, 1, 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.activation(self.norm(self.conv_t(x))))


class Head(nn.Module):
    """AvgPool3d (window cut to the map) stride 1, mean, dropout, linear: (B, C, t, h, w) -> (B, classes)."""

    def __init__(self, c_in: int, num_classes: int, pool: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(pool, 1)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.pool(x).mean(dim=(2, 3, 4))))


class R2Plus1D(nn.Module):
    """Input (B, 3, frames, resolution, resolution); output (B, num_classes) logits."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _block(c_in: int, c_inner: int, c_out: int, t_stride: int, s_stride: int) -> ResBlock:
    conv_b = Conv2plus1d(c_inner, t_stride, s_stride)
    return ResBlock(c_in, c_out, Bottleneck(c_in, c_inner, c_out, conv_b), (t_stride, s_stride, s_stride))


def create_r2plus1d(num_classes: int, frames: int, resolution: int, width: float, dropout: float = 0.0) -> R2Plus1D:
    """R(2+1)D-50 at ``width``; the head's window cut to the input (module doc)."""
    if frames < 1 or resolution < 1:
        raise BadInput(f"R(2+1)D: frames and resolution must be positive, got {frames} x {resolution}")
    ch = partial(scale_channels, width=width, divisor=CHANNEL_DIVISOR)
    blocks: list[nn.Module] = [Stem(ch(STEM_CHANNELS))]
    c_in, t, s = ch(STEM_CHANNELS), frames, (resolution + 1) // 2
    for depth, c_out, ts in zip(STAGE_DEPTHS, STAGE_CHANNELS, TEMPORAL_STRIDES):
        inner, out = ch(c_out // 4), ch(c_out)
        blocks.append(ResStage([_block(c_in if i == 0 else out, inner, out, ts if i == 0 else 1, 2 if i == 0 else 1)
                                for i in range(depth)]))
        c_in, t, s = out, (t - 1) // ts + 1, (s - 1) // 2 + 1
    pool = (min(HEAD_POOL[0], t), min(HEAD_POOL[1], s), min(HEAD_POOL[2], s))
    blocks.append(Head(c_in, num_classes, pool, dropout))
    return R2Plus1D(blocks)


def r2plus1d_r50(num_classes: int = 400, frames: int = 16, resolution: int = 224, width: float = 1.0) -> nn.Module:
    """R(2+1)D-50: 16 x 224 (PyTorchVideo's zoo configuration, 16 frames x 4 stride)."""
    return create_r2plus1d(num_classes, frames, resolution, width)


# ----------------------------------------------------------------------------- R(2+1)D-18

def midplanes(c_in: int, c_out: int) -> int:
    """The paper's M_i: the (2+1)D block's inner width that matches the parameters of a
    full 3x3x3 conv, floor(3*3*3 * N_in * N_out / (3*3 * N_in + 3 * N_out))."""
    return (c_in * c_out * 27) // (c_in * 9 + 3 * c_out)


class SpatioTemporal(nn.Sequential):
    """(1,3,3) conv stride (1,s,s) -> BN -> ReLU -> (3,1,1) conv stride (s,1,1) (torchvision's ``Conv2Plus1D``)."""

    def __init__(self, c_in: int, c_out: int, mid: int, stride: int = 1) -> None:
        super().__init__(nn.Conv3d(c_in, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
                         nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                         nn.Conv3d(mid, c_out, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class BasicBlock(nn.Module):
    """Two (2+1)D convs (both of inner width M_i of the block's input) with BN, plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        mid = midplanes(c_in, c_out)
        self.conv1 = nn.Sequential(SpatioTemporal(c_in, c_out, mid, stride), nn.BatchNorm3d(c_out),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(SpatioTemporal(c_out, c_out, mid), nn.BatchNorm3d(c_out))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm3d(c_out)) \
            if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class R2Plus1D18(nn.Module):
    """R(2+1)D-18: (B, 3, T, H, W) -> (B, num_classes); torchvision ``r2plus1d_18``'s module tree."""

    def __init__(self, num_classes: int, width: float) -> None:
        super().__init__()
        ch = partial(scale_channels, width=width, divisor=CHANNEL_DIVISOR)
        c45, c64 = ch(45), ch(64)
        self.stem = nn.Sequential(nn.Conv3d(3, c45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                                  nn.BatchNorm3d(c45), nn.ReLU(inplace=True),
                                  nn.Conv3d(c45, c64, (3, 1, 1), 1, (1, 0, 0), bias=False),
                                  nn.BatchNorm3d(c64), nn.ReLU(inplace=True))
        c_in = c64
        for i, (c, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            out = ch(c)
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c_in, out, stride), BasicBlock(out, out, 1)))
            c_in = out
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return self.fc(self.avgpool(x).flatten(1))


def r2plus1d_18(num_classes: int = 400, frames: int = 16, resolution: int = 112, width: float = 1.0) -> nn.Module:
    """R(2+1)D-18 (the paper's Table 2 network, torchvision's layout): 16 x 112; the edge configuration
    Jetson users run is 8 x 112 (``--frames 8``)."""
    if frames < 1 or resolution < 1:
        raise BadInput(f"R(2+1)D: frames and resolution must be positive, got {frames} x {resolution}")
    return R2Plus1D18(num_classes, width)


# the stems and the classifiers keep their channels; in R(2+1)D-50 the residual stream (conv_c,
# branch1_conv) too
FAMILY = FamilySpec("r2plus1d", protected=(r"^blocks\.0\.", r"\.conv_c$", r"\.branch1_conv$", r"\.proj$",
                                           r"^stem\.", r"^fc$"))
