"""2D-only ConvNets (``convnet2d`` family) for boards that run standard operators only.

Exported (TorchScript or dynamo exporter, then onnxslim) the graph holds only
Conv (BatchNorm folded in), Relu, Add, Concat, Slice, AveragePool, Reshape and
Gemm: no 3D operator, no Transpose, no LayerNorm / GELU / Swish / Sigmoid, and
no tensor above rank 4 but the network input - the operator set of the Vitis AI
DPU, FINN and hls4ml.

Layout.  The net works on frames folded into the batch axis, **time-major**:
``(T*B, C, H, W)``, row ``t*B + b`` holding frame ``t`` of clip ``b``.
``frames_to_batch`` gets there from the (B, 3, T, H, W) input by a Reshape to
(B*3, T, H, W), one Slice + Reshape per frame and one Concat - the same single
copy of the input that ``permute + reshape`` makes, but without the rank-5
Transpose (onnxruntime runs both in the same time, within noise).  Time-major
rows make every temporal operation a slice of whole ``B``-row blocks along axis
0, so the body needs no Reshape at all; the head needs two.

Temporal modelling, with standard operators only:

- ``TemporalShift`` (TSM, Lin et al. 2019): 1/8 of the channels come from the
  previous frame, 1/8 from the next one, zeros past either end of the clip -
  Slice + Concat with a zero constant, not ``torch.roll``.  It heads the
  residual branch of the blocks of the early and middle stages.
- ``TemporalConv``: a (k x 1) convolution over time - exactly a Conv2d with a
  (k, 1) kernel over the (B, C, T, H*W) layout (``as_kx1_weight``) - computed
  as one 1x1 Conv2d over the channel concatenation of the k frame-shifted
  copies, which needs no Transpose.  It is the expansion conv of every block of
  the last stage(s), where maps are small (SlowFast puts its temporal kernels
  in res4/res5 the same way).

Without these two modules the net would be blind to frame order (per-frame 2D
layers, then a mean over time).

Blocks are MobileNetV2 inverted residuals (1x1 expand, 3x3 depthwise as a
grouped Conv2d, 1x1 project) with BN and ReLU (not ReLU6, which exports as
Clip).  Head: 1x1 conv, then whole-map AveragePools over space and over time
(the dynamo exporter turns adaptive pooling into ReduceMean), Linear.

Any T >= 1 and any H, W work; ``frames`` and ``resolution`` of the builders are
the default input the FLOP figures refer to and are stored on the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.models.common import scale_channels
from edge.models.family import FamilySpec

Temporal = Literal["none", "shift", "conv"]


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (T*B, C, H, W), time-major (row ``t*B + b``).

    Exports as one Reshape to (B*C, T, H, W), T Slice + T Reshape and one
    Concat: no Transpose, and no tensor above rank 4 but the network input.
    """
    b, c, t, h, w = x.shape
    x = x.reshape(b * c, t, h, w)
    return torch.cat([x[:, i:i + 1].reshape(b, c, h, w) for i in range(t)], dim=0)


def shift_frames(x: torch.Tensor, frames: int, offset: int) -> torch.Tensor:
    """Frame ``t`` of the result is frame ``t - offset`` of ``x``, zeros where that
    frame does not exist.  ``x``: (T*B, C, H, W) time-major -> same shape.

    Exports as one Slice and one Concat with a zero constant.
    """
    if offset == 0:
        return x
    rows = abs(offset) * (x.shape[0] // frames)
    if abs(offset) >= frames:
        return torch.zeros_like(x)
    zeros = x.new_zeros((rows,) + tuple(x.shape[1:]))
    if offset > 0:
        return torch.cat([zeros, x[: x.shape[0] - rows]], dim=0)
    return torch.cat([x[rows:], zeros], dim=0)


class TemporalShift(nn.Module):
    """Temporal shift (TSM): channels ``[0, C/d)`` come from the previous frame,
    ``[C/d, 2C/d)`` from the next frame (zeros past either end), the rest stay.

    (T*B, C, H, W) time-major -> same shape.  No parameters.
    """

    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        fold = x.shape[1] // self.fold_div
        if fold == 0:
            return x
        n = x.shape[0] // frames
        zeros = x.new_zeros((n, fold) + tuple(x.shape[2:]))
        past = torch.cat([zeros, x[: x.shape[0] - n, :fold]], dim=0)
        future = torch.cat([x[n:, fold:2 * fold], zeros], dim=0)
        return torch.cat([past, future, x[:, 2 * fold:]], dim=1)


class TemporalConv(nn.Module):
    """A (k x 1) convolution over time, no bias; k = 1 is a plain 1x1 Conv2d.

    (T*B, C_in, H, W) time-major -> (T*B, C_out, H, W).  Output frame ``t`` is
    ``sum_j W_j @ x[t + j - k//2]`` (zero frames past either end), the same as
    ``F.conv2d`` with kernel ``as_kx1_weight()`` and padding (k//2, 0) over the
    (B, C_in, T, H*W) layout.  Computed as a 1x1 Conv2d over the channel
    concatenation of the k shifted copies (Slice + Concat + Conv, no Transpose).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"temporal kernel must be odd and >= 1, got {kernel}")
        self.kernel = kernel
        self.in_channels = in_channels
        self.conv = nn.Conv2d(kernel * in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if self.kernel == 1:
            return self.conv(x)
        half = self.kernel // 2
        taps = [shift_frames(x, frames, half - j) for j in range(self.kernel)]
        return self.conv(torch.cat(taps, dim=1))

    def as_kx1_weight(self) -> torch.Tensor:
        """The equivalent Conv2d weight over (B, C_in, T, H*W): (C_out, C_in, k, 1)."""
        w = self.conv.weight.reshape(self.conv.out_channels, self.kernel, self.in_channels)
        return w.permute(0, 2, 1).unsqueeze(-1)


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm2d + ReLU; (N, cin, H, W) -> (N, cout, H/stride, W/stride)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block with a temporal module; (T*B, cin, H, W) -> (T*B, cout, H/s, W/s).

    ``temporal``: ``"shift"`` puts a TemporalShift at the head of the residual
    branch (only where the block has a residual, so the identity path keeps the
    unshifted features); ``"conv"`` makes the expansion a (3 x 1) TemporalConv;
    ``"none"`` is a per-frame 2D block.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int, temporal: Temporal) -> None:
        super().__init__()
        if temporal == "conv" and expand == 1:
            raise ValueError("a temporal-conv block needs an expansion conv (expand > 1)")
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.shift = TemporalShift() if temporal == "shift" and self.residual else None
        self.expand: TemporalConv | None = None
        if expand != 1:
            self.expand = TemporalConv(cin, hidden, 3 if temporal == "conv" else 1)
            self.expand_bn = nn.BatchNorm2d(hidden)
            self.expand_act = nn.ReLU(inplace=True)
        self.depthwise = conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        y = self.shift(x, frames) if self.shift is not None else x
        if self.expand is not None:
            y = self.expand_act(self.expand_bn(self.expand(y, frames)))
        y = self.project_bn(self.project(self.depthwise(y)))
        return x + y if self.residual else y


@dataclass(frozen=True)
class StageSpec:
    """``blocks`` inverted residuals to ``channels`` (at width 1.0); the first has ``stride``."""

    expand: int
    channels: int
    blocks: int
    stride: int
    temporal: Temporal


@dataclass(frozen=True)
class NetSpec:
    """Stem conv channels, the stages in order, head 1x1-conv channels (all at width 1.0)."""

    stem: int
    stages: tuple[StageSpec, ...]
    head: int
    dropout: float = 0.2


class ConvNet2d(nn.Module):
    """2D-only video ConvNet: (B, 3, T, H, W) -> (B, num_classes) logits."""

    def __init__(self, spec: NetSpec, num_classes: int, frames: int, resolution: int,
                 width: float = 1.0) -> None:
        super().__init__()
        self.frames = frames
        self.resolution = resolution
        ch = scale_channels(spec.stem, width, divisor=8)
        self.stem = conv_bn_relu(3, ch, 3, stride=2)
        blocks: list[InvertedResidual] = []
        for stage in spec.stages:
            out = scale_channels(stage.channels, width, divisor=8)
            for i in range(stage.blocks):
                blocks.append(InvertedResidual(ch, out, stage.stride if i == 0 else 1,
                                               stage.expand, stage.temporal))
                ch = out
        self.blocks = nn.ModuleList(blocks)
        head = scale_channels(spec.head, width, divisor=8)
        self.head = conv_bn_relu(ch, head, 1)
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = nn.Linear(head, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init over fan-in (right for depthwise convs too, unlike fan-out);
        # the projections, which no ReLU follows, at gain 1, halved on residual
        # branches so that the untrained net in eval mode (BN statistics 0 / 1)
        # keeps logits of order 1 instead of growing with depth.  Every conv is
        # followed by BN, so none of these scales matters to training.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for block in self.blocks:
                nn.init.kaiming_normal_(block.project.weight, mode="fan_in", nonlinearity="linear")
                if block.residual:
                    block.project.weight.mul_(0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, head_channels): pooled over space and time."""
        b, t = x.shape[0], x.shape[2]
        y = self.stem(frames_to_batch(x))
        for block in self.blocks:
            y = block(y, t)
        y = self.head(y)
        # Whole-map AveragePools, stride 1 (the DPU allows strides up to 8 only).
        y = F.avg_pool2d(y, tuple(y.shape[2:]), stride=1)  # (T*B, C, 1, 1): mean over space
        y = F.avg_pool2d(y.reshape(1, 1, t, -1), (t, 1), stride=1)  # (1, 1, 1, B*C): mean over time
        return y.reshape(b, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


_SMALL = NetSpec(
    stem=16,
    stages=(
        StageSpec(1, 16, 1, 1, "none"),
        StageSpec(4, 24, 2, 2, "shift"),
        StageSpec(4, 32, 3, 2, "shift"),
        StageSpec(4, 64, 3, 2, "shift"),
        StageSpec(4, 96, 2, 1, "shift"),
        StageSpec(4, 160, 2, 2, "conv"),
    ),
    head=640,
)

# MobileNetV2-1.0 stages with expansion 4 instead of 6.
_MEDIUM = NetSpec(
    stem=32,
    stages=(
        StageSpec(1, 16, 1, 1, "none"),
        StageSpec(4, 24, 2, 2, "shift"),
        StageSpec(4, 32, 3, 2, "shift"),
        StageSpec(4, 64, 4, 2, "shift"),
        StageSpec(4, 96, 3, 1, "shift"),
        StageSpec(4, 160, 3, 2, "conv"),
        StageSpec(4, 320, 1, 1, "conv"),
    ),
    head=1280,
)


def convnet2d_s(num_classes: int = 400, frames: int = 8, resolution: int = 160,
                width: float = 1.0) -> nn.Module:
    """Small 2D-only ConvNet (input (B, 3, 8, 160, 160) by default)."""
    return ConvNet2d(_SMALL, num_classes, frames, resolution, width)


def convnet2d_m(num_classes: int = 400, frames: int = 16, resolution: int = 160,
                width: float = 1.0) -> nn.Module:
    """Medium 2D-only ConvNet (input (B, 3, 16, 160, 160) by default)."""
    return ConvNet2d(_MEDIUM, num_classes, frames, resolution, width)


# stem, every block.project (shift input / residual stream), the classifier keep their channels
FAMILY = FamilySpec("convnet2d", protected=(r"^stem\.", r"\.project$", r"^fc$"), slim_rule="convnet2d")
