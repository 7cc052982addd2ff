"""S3D and S3D-G (Xie et al., "Rethinking Spatiotemporal Feature Learning:
Speed-Accuracy Trade-offs in Video Classification", ECCV 2018), written from the
paper: Inception-v1 (GoogLeNet) inflated to 3-D, with every 3-D convolution made
separable, a (1, k, k) spatial conv followed by a (k, 1, 1) temporal conv, each
with BatchNorm and ReLU.

Network, input (B, 3, T, H, W)::

    features.0   sep conv 7, stride 2, 3 -> 64                       (B, 64, T/2, H/2, W/2)
    features.1   max pool (1,3,3) stride (1,2,2)                     (B, 64, T/2, H/4, W/4)
    features.2   1x1x1 conv 64 -> 64
    features.3   sep conv 3, 64 -> 192           [S3D-G: gated]
    features.4   max pool (1,3,3) stride (1,2,2)                     (B, 192, T/2, H/8, W/8)
    features.5-6   Inception 3b, 3c  -> 480
    features.7   max pool (3,3,3) stride 2                           (B, 480, T/4, H/16, W/16)
    features.8-12  Inception 4b-4f  -> 832
    features.13  max pool (2,2,2) stride 2                           (B, 832, T/8, H/32, W/32)
    features.14-15 Inception 5b, 5c  -> 1024
    avgpool      AvgPool3d (2, 7, 7) stride 1, dropout, 1x1x1 conv 1024 -> classes,
                 mean over what is left of (T, H, W)                 (B, num_classes)

(T/2 etc. round up.)  An Inception block concatenates four branches: a 1x1x1 conv;
1x1x1 conv -> sep conv 3; 1x1x1 conv -> sep conv 3; 3x3x3 max pool (stride 1) ->
1x1x1 conv.  Branch widths are GoogLeNet's (Szegedy 2015, Table 1).  BatchNorm
eps 1e-3.  Module names and order follow torchvision's ``s3d`` (``features``,
``avgpool``, ``classifier``; ``branch0``-``branch3``), so its state dict loads
unchanged into ``s3d``.

S3D-G adds feature gating (paper section 4.4): ``y = sigmoid(W pool(x) + b) * x``
with ``pool`` the average over (T, H, W) and ``W`` a C x C matrix (a 1x1x1 conv
here), after the sep conv of ``features.3`` and after every branch of every
Inception block, as in the authors' TF-Slim ``s3dg.py`` (``gating_startat=
'Conv2d_2c_3x3'``).

Any frames and crop: the network is fully convolutional up to the head.  Where the
input is too short or small for a pooling window (fewer than 8 frames, crops under
224), the window of the last max pool and of the head's average pool is cut to what
is left, so the head pools globally; at 16+ frames and a 224 crop it is torchvision's
network exactly.

Widths: ``width`` multiplies every channel count with
:func:`edge.models.common.scale_channels` (divisor 8); 1.0 is the published model.

Complexity (``edgevid models``; multiply-adds of one clip counted by
``torch.utils.flop_counter``, convolutions and classifier; 400 classes):

======  =============  ==========  ========  ========================================
model   frames x crop  params      GMACs     published
======  =============  ==========  ========  ========================================
S3D     64 x 224       8,320,048   71.92     8,320,048 params (torchvision ``s3d``)
S3D-G   64 x 224       9,545,056   71.92     no parameter count in the paper
======  =============  ==========  ========  ========================================

GFLOPs: the paper's figures for S3D / S3D-G could not be confirmed here, so none is
quoted.  The gates add 1.2M parameters and almost no compute (one C x C product per
clip).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.common import scale_channels
from edge.models.family import FamilySpec

CHANNEL_DIVISOR = 8
BN_EPS = 1e-3
# (in, b0, b1 mid, b1 out, b2 mid, b2 out, b3 out): GoogLeNet's Inception 3b ... 5c
INCEPTION: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3b": (192, 64, 96, 128, 16, 32, 32),
    "3c": (256, 128, 128, 192, 32, 96, 64),
    "4b": (480, 192, 96, 208, 16, 48, 64),
    "4c": (512, 160, 112, 224, 24, 64, 64),
    "4d": (512, 128, 128, 256, 24, 64, 64),
    "4e": (512, 112, 144, 288, 32, 64, 64),
    "4f": (528, 256, 160, 320, 32, 128, 128),
    "5b": (832, 256, 160, 320, 32, 128, 128),
    "5c": (832, 384, 192, 384, 48, 128, 128),
}


class ConvBNReLU(nn.Sequential):
    """Conv3d (no bias) -> BatchNorm3d (eps 1e-3) -> ReLU; torchvision's ``Conv3dNormActivation``."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__(nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm3d(c_out, eps=BN_EPS), nn.ReLU(inplace=True))


class SepConv(nn.Sequential):
    """(1, k, k) conv stride (1, s, s), then (k, 1, 1) conv stride (s, 1, 1), each with BN and ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int) -> None:
        super().__init__(ConvBNReLU(c_in, c_out, (1, k, k), (1, stride, stride), (0, padding, padding)),
                         ConvBNReLU(c_out, c_out, (k, 1, 1), (stride, 1, 1), (padding, 0, 0)))


class SelfGating(nn.Module):
    """S3D-G feature gating: x * sigmoid(W mean_{T,H,W}(x) + b); (B, C, T, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4), keepdim=True)))


def _gated(block: nn.Module, channels: int, gating: bool) -> nn.Module:
    return nn.Sequential(block, SelfGating(channels)) if gating else block


class Inception(nn.Module):
    """Four branches concatenated on channels: (B, C_in, T, H, W) -> (B, b0+b1+b2+b3, T, H, W)."""

    def __init__(self, c_in: int, b0: int, b1m: int, b1: int, b2m: int, b2: int, b3: int, gating: bool) -> None:
        super().__init__()
        self.branch0 = _gated(ConvBNReLU(c_in, b0), b0, gating)
        self.branch1 = _gated(nn.Sequential(ConvBNReLU(c_in, b1m), SepConv(b1m, b1, 3, 1, 1)), b1, gating)
        self.branch2 = _gated(nn.Sequential(ConvBNReLU(c_in, b2m), SepConv(b2m, b2, 3, 1, 1)), b2, gating)
        self.branch3 = _gated(nn.Sequential(nn.MaxPool3d(3, 1, 1), ConvBNReLU(c_in, b3)), b3, gating)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


class S3D(nn.Module):
    """S3D / S3D-G; input (B, 3, frames, resolution, resolution), output (B, num_classes) logits."""

    def __init__(self, features: nn.Sequential, avgpool: nn.AvgPool3d, c_last: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.features = features
        self.avgpool = avgpool
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv3d(c_last, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(self.avgpool(self.features(x)))
        return x.mean(dim=(2, 3, 4))


# ----------------------------------------------------------------------------- builders

def _after(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def create_s3d(num_classes: int, frames: int, resolution: int, width: float, gating: bool,
               dropout: float = 0.2) -> S3D:
    """S3D (``gating`` False) or S3D-G at ``width``; pooling windows cut to the input (module doc)."""
    if frames < 1 or resolution < 1:
        raise BadInput(f"S3D: frames and resolution must be positive, got {frames} x {resolution}")
    if resolution < 32:
        raise BadInput(f"S3D: the crop must be at least 32 pixels (five stride-2 stages), got {resolution}")
    ch = partial(scale_channels, width=width, divisor=CHANNEL_DIVISOR)
    t = _after(_after(frames, 7, 2, 3), 3, 2, 1)  # after the stem conv and the (3,3,3) pool
    s = resolution
    for k, st, p in ((7, 2, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1)):  # stem conv and three pools
        s = _after(s, k, st, p)
    pool_t, pool_s = min(2, t), min(2, s)
    t, s = _after(t, pool_t, pool_t, 0), _after(s, pool_s, pool_s, 0)

    c64, c192 = ch(64), ch(192)
    c = c192
    blocks: dict[str, Inception] = {}
    for name, (_, *outs) in INCEPTION.items():  # each block takes what the one before it gave
        b0, b1m, b1, b2m, b2, b3 = (ch(o) for o in outs)
        blocks[name] = Inception(c, b0, b1m, b1, b2m, b2, b3, gating=gating)
        c = b0 + b1 + b2 + b3
    features = nn.Sequential(
        SepConv(3, c64, 7, 2, 3),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ConvBNReLU(c64, c64),
        _gated(SepConv(c64, c192, 3, 1, 1), c192, gating),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        blocks["3b"], blocks["3c"],
        nn.MaxPool3d(3, 2, 1),
        blocks["4b"], blocks["4c"], blocks["4d"], blocks["4e"], blocks["4f"],
        nn.MaxPool3d((pool_t, pool_s, pool_s), (pool_t, pool_s, pool_s)),
        blocks["5b"], blocks["5c"],
    )
    avgpool = nn.AvgPool3d((min(2, t), min(7, s), min(7, s)), 1)
    return S3D(features, avgpool, c, num_classes, dropout)


def s3d(num_classes: int = 400, frames: int = 64, resolution: int = 224, width: float = 1.0) -> nn.Module:
    """S3D: 64 x 224 (the paper's training input)."""
    return create_s3d(num_classes, frames, resolution, width, gating=False)


def s3dg(num_classes: int = 400, frames: int = 64, resolution: int = 224, width: float = 1.0) -> nn.Module:
    """S3D-G: S3D with feature gating."""
    return create_s3d(num_classes, frames, resolution, width, gating=True)


# the stem and the classifier keep their channels
FAMILY = FamilySpec("s3d", protected=(r"^features\.0\.0\.", r"^classifier\."))
