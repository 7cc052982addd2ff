"""TensorRT 10's ONNX parser as data, checked without TensorRT.

API: ``Rule(text, violated(node, graph) -> bool)``, ``TrtOpSet`` (opset range,
op -> rules, tensor types), ``TRT10`` (from onnx-tensorrt docs/operators.md,
10.x), ``check_onnx(proto, opset=TRT10) -> [reason]`` (static shapes, ops and
their restrictions, opset, tensor types, INT64 constants outside int32).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class _Graph:
    """What a rule needs to look at: constants (initializers and Constant outputs)."""

    def __init__(self, proto: "onnx.ModelProto") -> None:
        from onnx import numpy_helper

        from quant.onnx_io import initializers

        self.consts: dict[str, np.ndarray] = initializers(proto)
        for node in proto.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(a.t)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _input(node: Any, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


@dataclass(frozen=True)
class Rule:
    """One restriction of an operator; ``violated(node, graph)`` is True when the node breaks it."""

    text: str
    violated: Callable[[Any, _Graph], bool]


def _not_const(i: int) -> Callable[[Any, _Graph], bool]:
    return lambda n, g: bool(_input(n, i)) and g.const(_input(n, i)) is None


def _nonzero_const(i: int) -> Callable[[Any, _Graph], bool]:
    def violated(n: Any, g: _Graph) -> bool:
        name = _input(n, i)
        if not name:
            return False
        v = g.const(name)
        return v is None or bool(np.any(v != 0))
    return violated


def _pool_rank(n: Any, g: _Graph) -> bool:
    return len(_attr(n, "kernel_shape", [])) not in (2, 3)


def _dilated(n: Any, g: _Graph) -> bool:
    return any(d != 1 for d in _attr(n, "dilations", []) or [])


_POOL = (Rule("2D or 3D pooling only", _pool_rank), Rule("dilations must be empty or all ones", _dilated))
_REDUCE = (Rule("`axes` must be an initializer", _not_const(1)),)
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass(frozen=True)
class TrtOpSet:
    """TensorRT's ONNX parser as data: supported ops with their restrictions."""

    version: str
    opsets: tuple[int, int]  # inclusive range of the default-domain opset
    ops: Mapping[str, tuple[Rule, ...]]
    types: frozenset[str]  # ONNX tensor element types TensorRT takes
    io_only_types: frozenset[str] = field(default_factory=frozenset)  # only as network input/output


# From onnx-tensorrt docs/operators.md (TensorRT 10.x, "Y" rows and their restrictions).  The opset
# range is the one every TensorRT 10 release parses: 10.0 documents opsets 9-20, later 10.x up to 24.
TRT10 = TrtOpSet(
    version="10.x",
    opsets=(9, 20),
    types=frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE", "INT32", "INT64", "INT8", "INT4", "UINT8",
                     "BOOL", "FLOAT8E4M3FN", "FLOAT4E2M1"}),
    io_only_types=frozenset({"UINT8"}),
    ops={
        **{op: () for op in (
            "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
            "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
            "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "DepthToSpace", "Div", "Einsum", "Elu",
            "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
            "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
            "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU", "HammingWindow", "HannWindow",
            "HardSigmoid", "HardSwish", "Identity", "If", "ImageScaler", "InstanceNormalization", "IsInf",
            "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN",
            "LpNormalization", "MatMul", "Max", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod",
            "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "Or", "Pad", "ParametricSoftplus", "Pow",
            "PRelu", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
            "Reciprocal", "Relu", "Reshape", "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh",
            "Scan", "Scatter", "ScatterElements", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
            "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt",
            "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose", "Trilu", "Upsample",
            "Where", "Xor")},
        **{op: _REDUCE for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                  "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
        "AveragePool": _POOL,
        "LpPool": (Rule("dilations must be empty or all ones", _dilated),),
        "MaxPool": (*_POOL, Rule("the `Indices` output is unsupported",
                                 lambda n, g: len(n.output) > 1 and bool(n.output[1]))),
        "Constant": (Rule("`sparse_value`, `value_string` and `value_strings` are unsupported",
                          lambda n, g: any(a.name in ("sparse_value", "value_string", "value_strings")
                                           for a in n.attribute)),),
        "CumSum": (Rule("`axis` must be a build-time constant", _not_const(1)),),
        "DequantizeLinear": (Rule("`x_zero_point` must be zero", _nonzero_const(2)),),
        "QuantizeLinear": (Rule("`y_zero_point` must be 0", _nonzero_const(2)),),
        "Dropout": (Rule("`training_mode` must be an initializer that is False", _nonzero_const(2)),),
        "Hardmax": (),
        "LayerNormalization": (Rule("only the first output `Y` is supported",
                                    lambda n, g: any(bool(o) for o in n.output[1:])),),
        "LSTM": (Rule("`input_forget` must be 0", lambda n, g: _attr(n, "input_forget", 0) != 0),
                 Rule("`layout` must be 0", lambda n, g: _attr(n, "layout", 0) != 0)),
        "OneHot": (Rule("`depth` must be a build-time constant", _not_const(1)),),
        "Resize": (
            Rule(f"coordinate_transformation_mode must be one of {', '.join(sorted(_RESIZE_COORD))}",
                 lambda n, g: _attr(n, "coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORD),
            Rule("mode must be nearest or linear",
                 lambda n, g: _attr(n, "mode", "nearest") not in ("nearest", "linear")),
            Rule(f"nearest_mode must be one of {', '.join(sorted(_RESIZE_NEAREST))}",
                 lambda n, g: _attr(n, "nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST),
            Rule("antialiasing is not supported", lambda n, g: _attr(n, "antialias", 0) != 0),
            Rule("keep_aspect_ratio_policy must be stretch",
                 lambda n, g: _attr(n, "keep_aspect_ratio_policy", "stretch") != "stretch")),
        "ScatterND": (Rule("`reduction` other than none is not supported",
                           lambda n, g: _attr(n, "reduction", "none") != "none"),),
        "Squeeze": (Rule("`axes` must be resolvable to a constant", _not_const(1)),),
        "Unsqueeze": (Rule("`axes` must be resolvable to a constant", _not_const(1)),),
        "STFT": (Rule("`frame_step` and `window` must be initializers",
                      lambda n, g: _not_const(1)(n, g) or _not_const(2)(n, g)),),
        "TopK": (Rule("`sorted` must be 1", lambda n, g: _attr(n, "sorted", 1) != 1),
                 Rule("`K` must be a constant less than 3840",
                      lambda n, g: g.const(_input(n, 1)) is None or int(np.max(g.const(_input(n, 1)))) >= 3840)),
    },
)


def check_onnx(proto: "onnx.ModelProto", opset: TrtOpSet = TRT10) -> list[str]:
    """Reasons TensorRT (``opset``) would refuse ``proto``, knowable without TensorRT.

    Each reason names the node (or tensor), its op and the rule.
    """
    import onnx

    reasons: list[str] = []
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    lo, hi = opset.opsets
    if version is None or not lo <= version <= hi:
        reasons.append(f"model: default-domain opset {version} outside TensorRT {opset.version}'s range {lo}-{hi}")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - inference is a best effort; inputs/outputs are still checked
        inferred = proto
    g = inferred.graph
    inits = {i.name for i in g.initializer}
    io_names = {v.name for v in g.input} | {v.name for v in g.output}
    for where, values in (("input", [v for v in g.input if v.name not in inits]), ("output", g.output),
                          ("tensor", g.value_info)):
        for v in values:
            t = v.type.tensor_type
            if not v.type.HasField("tensor_type"):
                reasons.append(f"{where} {v.name!r}: not a tensor (sequences/maps are unsupported)")
                continue
            type_name = onnx.TensorProto.DataType.Name(t.elem_type)
            if t.elem_type and type_name not in opset.types:
                reasons.append(f"{where} {v.name!r}: element type {type_name} is not supported by TensorRT")
            elif type_name in opset.io_only_types and v.name not in io_names:
                reasons.append(f"{where} {v.name!r}: {type_name} only as a network input or output")
            dims = t.shape.dim
            if where != "tensor" and not t.HasField("shape"):
                reasons.append(f"{where} {v.name!r}: no shape; edgevid builds static-shape engines")
            elif any(d.dim_param or (where != "tensor" and d.dim_value <= 0) for d in dims):
                shape = [d.dim_param or d.dim_value for d in dims]
                reasons.append(f"{where} {v.name!r}: dynamic shape {shape}; edgevid builds static-shape engines")
    graph = _Graph(proto)
    slice_bounds = {n.input[i] for n in proto.graph.node if n.op_type == "Slice" for i in (1, 2) if len(n.input) > i}
    for name, value in graph.consts.items():
        if value.dtype == np.int64 and value.size and name not in slice_bounds and (
                value.min() < INT32_MIN or value.max() > INT32_MAX):
            reasons.append(f"initializer {name!r} (INT64): values outside the int32 range; TensorRT before 10 "
                           "casts INT64 to INT32 and clamps (Slice starts/ends are exempt: clamping them is exact)")
    for node in proto.graph.node:
        label = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            reasons.append(f"{label}: custom domain {node.domain!r}; TensorRT needs a plugin for it")
            continue
        rules = opset.ops.get(node.op_type)
        if rules is None:
            reasons.append(f"{label}: not supported by the TensorRT {opset.version} ONNX parser")
            continue
        reasons.extend(f"{label}: {r.text}" for r in rules if r.violated(node, graph))
    return reasons
