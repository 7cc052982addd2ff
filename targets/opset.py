"""Operator sets described as typed data (NNCF's hardware-config style).

An :class:`OpSet` is a name, a maximum tensor rank, a static-shape flag and one
:class:`OpRule` per legal ONNX operator.  A rule holds the operator's limits as
data (kernel, stride, dilation, padding, groups, which inputs must be constant,
attribute modes, quantizer scales); :mod:`targets.checker` reads the rules and
explains every rejected node, and :mod:`targets.lowering` reads them to decide
which rewrites a model needs.  Nothing here imports onnx.

``FPGA_OPSET`` is modelled on the Xilinx Vitis AI DPU (DPUCZDX8G, UG1414 v3.0
"Currently Supported Operators", channel_parallel 16, bank_depth 2048) and on the
FINN / hls4ml dataflow compilers (1-D/2-D CNNs only): 2-D convolution (dense or
depthwise) with BN folded in, ReLU/ReLU6/Clip, element-wise Add and Mul, Concat,
Slice, max/average/global-average pooling, Gemm/MatMul, Reshape/Flatten and
8-bit symmetric per-tensor power-of-two Quantize/DequantizeLinear; no 3-D
operators, no tensors above rank 4, no dynamic shapes.

Structural operators the set also allows, and why:

* ``Transpose`` (rank <= 4): moves between the network's (1, 3, T, H, W) clip and
  the (T, C, H, W) working layout the lowering keeps (time in the batch axis).
* ``Pad`` (constant 0): the temporal zero padding of a lowered Conv3d (the taps
  of a temporal kernel read zero frames at the clip's ends).
* ``Mul``: the squeeze-excitation gate, hard-swish ``x * relu6(x + 3) / 6`` and
  hard-sigmoid ``relu6(x + 3) / 6`` (DPUCVDX8G lists Elementwise-Multiply,
  Hard Sigmoid and Hard Swish).
* ``Reshape``/``Flatten`` may read the rank-5 network input (and write a rank-5
  network output): dropping or adding a batch axis of 1 is a view of the buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# ONNX TensorProto element types (kept as numbers so that this module needs no onnx).
INT8 = 3
UINT8 = 2


@dataclass(frozen=True)
class IntRange:
    """Inclusive integer range ``[lo, hi]``."""

    lo: int
    hi: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.lo <= value <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class OpRule:
    """What one ONNX operator may look like in an operator set.

    spatial_dims: allowed number of spatial axes of a conv/pool kernel (Conv,
        MaxPool, AveragePool), e.g. ``(2,)``; empty: not checked.
    kernel / stride / dilation: per-spatial-axis ranges (None: not checked).
    depthwise_kernel / depthwise_stride: ranges for depthwise Conv (groups ==
        in == out channels) when they differ from the dense ones.
    pads_within_kernel: every pad <= (kernel - 1) * dilation on its axis.
    groups: Conv grouping allowed: ``"dense"`` (groups 1), ``"depthwise"``.
    dilation_x_channels: dilation * input channels <= this (DPU line buffer).
    kernel_words: kh * kw * ceil(in_channels_per_group / channel_parallel) <= this
        (DPU weight bank depth).
    const_inputs: input indices that must be constant (initializer, Constant or a
        DequantizeLinear of constants), e.g. weights, shapes, slice bounds.
    input_ranks: allowed ranks of input 0 (None: any rank up to the set's max).
    graph_io_any_rank: may read a graph input / write a graph output whose rank exceeds
        the set's max (dropping or adding the batch axis of 1 is a view of the buffer).
    pad_modes: allowed ``mode`` values (Pad).  zero_pad_value: Pad's value is 0.
    single_output: only output 0 may be used (MaxPool indices, Dropout mask).
    quant_dtypes / per_tensor / pow2_scale / zero_point_zero: quantizer limits
        (Quantize/DequantizeLinear).
    """

    op_type: str
    source: str
    spatial_dims: tuple[int, ...] = ()
    kernel: IntRange | None = None
    stride: IntRange | None = None
    dilation: IntRange | None = None
    depthwise_kernel: IntRange | None = None
    depthwise_stride: IntRange | None = None
    pads_within_kernel: bool = False
    groups: frozenset[str] = frozenset()
    dilation_x_channels: int | None = None
    kernel_words: int | None = None
    const_inputs: tuple[int, ...] = ()
    input_ranks: frozenset[int] | None = None
    graph_io_any_rank: bool = False
    pad_modes: frozenset[str] = frozenset()
    zero_pad_value: bool = False
    single_output: bool = False
    quant_dtypes: frozenset[int] = frozenset()
    per_tensor: bool = False
    pow2_scale: bool = False
    zero_point_zero: bool = False


@dataclass(frozen=True)
class OpSet:
    """A named operator set: a rule per legal operator plus graph-wide limits.

    max_rank: highest tensor rank any node may read or produce (graph inputs and
        outputs excepted for rules with ``graph_io_any_rank``).
    static_shapes: every tensor must have a fully known, fixed shape.
    channel_parallel: the DPU's channel parallelism used by ``kernel_words``.
    hints: (op type, what to do about it) for operators outside the set.
    """

    name: str
    description: str
    rules: tuple[OpRule, ...]
    max_rank: int = 4
    static_shapes: bool = True
    channel_parallel: int = 16
    hints: tuple[tuple[str, str], ...] = ()
    _by_op: Mapping[str, OpRule] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_op", MappingProxyType({r.op_type: r for r in self.rules}))

    def rule(self, op_type: str) -> OpRule | None:
        """The rule for ``op_type`` (ai.onnx domain), or None when the set lacks it."""
        return self._by_op.get(op_type)

    def hint(self, op_type: str) -> str:
        """What to do about ``op_type`` when the set lacks it ('' when nothing is known)."""
        return next((h for op, h in self.hints if op == op_type), "")

    def allows(self, op_type: str) -> bool:
        return op_type in self._by_op

    def conv_dims(self) -> tuple[int, ...]:
        """Spatial ranks the set's Conv takes (empty when it has no Conv)."""
        rule = self.rule("Conv")
        return rule.spatial_dims if rule else ()

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(self._by_op)


def _rules(*rules: OpRule) -> tuple[OpRule, ...]:
    return tuple(rules)


_DPU = "Vitis AI DPUCZDX8G (UG1414 v3.0)"
_FINN = "FINN/hls4ml (2-D CNN layers)"
_LAYOUT = "edgevid lowering: structural op of the (T, C, H, W) layout"

FPGA_OPSET = OpSet(
    name="fpga",
    description="FPGA dataflow/DPU operator set: 2-D conv (dense/depthwise), BN folded, ReLU/ReLU6/Clip, "
                "Add/Mul, Concat, Slice, pooling, Gemm/MatMul, Reshape/Flatten, int8 power-of-two QDQ; "
                "rank <= 4, static shapes",
    rules=_rules(
        OpRule("Conv", f"{_DPU} conv2d / depthwise-conv2d", spatial_dims=(2,), kernel=IntRange(1, 16),
               stride=IntRange(1, 8), dilation=IntRange(1, 16), depthwise_kernel=IntRange(1, 16),
               depthwise_stride=IntRange(1, 8), pads_within_kernel=True,
               groups=frozenset({"dense", "depthwise"}), dilation_x_channels=256 * 16, kernel_words=2048,
               const_inputs=(1, 2)),
        OpRule("Relu", f"{_DPU} activation"),
        OpRule("Clip", f"{_DPU} ReLU6 / clipped activation (constant bounds)", const_inputs=(1, 2)),
        OpRule("Add", f"{_DPU} elementwise-sum"),
        OpRule("Mul", f"{_DPU} elementwise-multiply (SE gate, hard-sigmoid/swish)"),
        OpRule("Concat", f"{_DPU} concat"),
        OpRule("Slice", f"{_FINN} / DPU strided slice (constant bounds)", const_inputs=(1, 2, 3, 4)),
        OpRule("MaxPool", f"{_DPU} max-pooling", spatial_dims=(2,), kernel=IntRange(1, 16),
               stride=IntRange(1, 8), dilation=IntRange(1, 1), pads_within_kernel=True, single_output=True),
        OpRule("AveragePool", f"{_DPU} average-pooling", spatial_dims=(2,), kernel=IntRange(1, 16),
               stride=IntRange(1, 8), dilation=IntRange(1, 1), pads_within_kernel=True),
        OpRule("GlobalAveragePool", f"{_DPU} average-pooling over the whole map", input_ranks=frozenset({4})),
        OpRule("GlobalMaxPool", f"{_DPU} max-pooling over the whole map", input_ranks=frozenset({4})),
        OpRule("Gemm", f"{_DPU} fully connected", const_inputs=(1, 2), input_ranks=frozenset({2})),
        OpRule("MatMul", f"{_DPU} fully connected (constant weights)", const_inputs=(1,),
               input_ranks=frozenset({2})),
        OpRule("Reshape", f"{_FINN} reshape (constant shape)", const_inputs=(1,), graph_io_any_rank=True),
        OpRule("Flatten", f"{_FINN} flatten", graph_io_any_rank=True),
        OpRule("Transpose", _LAYOUT),
        OpRule("Pad", f"{_LAYOUT} (temporal zero padding)", const_inputs=(1, 2, 3),
               pad_modes=frozenset({"constant"}), zero_pad_value=True),
        OpRule("QuantizeLinear", f"{_DPU} 8-bit symmetric per-tensor power-of-two quantizer",
               const_inputs=(1, 2), quant_dtypes=frozenset({INT8}), per_tensor=True, pow2_scale=True,
               zero_point_zero=True),
        OpRule("DequantizeLinear", f"{_DPU} 8-bit symmetric per-tensor power-of-two quantizer",
               const_inputs=(1, 2), quant_dtypes=frozenset({INT8}), per_tensor=True, pow2_scale=True,
               zero_point_zero=True),
    ),
    max_rank=4,
    static_shapes=True,
    channel_parallel=16,
    hints=(
        ("Sigmoid", "`edgevid lower --hard-activations` approximates it by ReLU6(x + 3) / 6"),
        ("HardSigmoid", "`edgevid lower` rewrites it exactly as Mul, Add, Clip"),
        ("HardSwish", "`edgevid lower` rewrites it exactly as Mul, Add, Clip"),
        ("BatchNormalization", "`edgevid lower` folds it into the conv before it or makes it a 1x1 conv"),
        ("ReduceMean", "`edgevid lower` turns means over space/time into global pooling"),
    ),
)

OPSETS: dict[str, OpSet] = {
    "fpga": FPGA_OPSET,
}

