"""Video-native graph features of a model, read from its ONNX graph: per op class,
multiply-adds, memory traffic and node counts (the latency predictor's inputs).

``graph_features(proto)`` runs ONNX shape inference and walks the nodes once:

======================  ==========================================================
op class                nodes
======================  ==========================================================
``conv3d_dense``        Conv with a 3-D kernel (not 1x1x1), groups < channels
``conv3d_depthwise``    Conv with a 3-D kernel, one input channel per group
``conv2d_dense``        Conv with a 1-D/2-D kernel (not 1x1): lowered or 2D-only nets
``conv2d_depthwise``    the same, one input channel per group
``pointwise``           Conv with an all-ones kernel (1x1x1 or 1x1), any rank
``matmul``              Gemm, MatMul (and their integer/QLinear forms)
``pooling``             AveragePool/MaxPool/LpPool, their Global forms, Reduce*
``elementwise``         activations, BatchNormalization, Add/Mul/..., Softmax,
                        Cast, (De)QuantizeLinear
``data``                Transpose, Concat, Pad, Slice, Split, Resize, Tile, ...
                        (memory traffic only)
======================  ==========================================================

Per class: ``macs`` (multiply-adds: output elements x input channels per group x
kernel volume for Conv; M x N x K for MatMul; one per input element for pooling
and per output element for elementwise ops), ``bytes`` (every input tensor,
weights included, plus every output, at its element size), ``nodes``, and for
Conv classes ``weight_planes``: the weight bytes times the number of 2-D output
planes per channel (batch x output frames for a Conv3d, batch for a Conv2d,
whose batch holds the frames in lowered nets) - the weight traffic of a kernel
that sweeps the clip plane by plane, which grows with frames while the weights
stay the same (ONNX Runtime's CPU Conv3d behaves so: doubling the frames costs
less than twice the time, more than the activations alone explain).  Nodes
that move no data (Shape, Constant, Identity, Reshape, Flatten, Squeeze,
Unsqueeze) are left out.  Batch 1: the input is (1, 3, T, H, W).

Imports no torch; ``onnx`` only (the predictor runs on the build host).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import onnx
from onnx import TensorProto

from edge.core.errors import BadInput

VERSION = 2  # bump when a definition below changes: stored features of another version are recomputed

OP_CLASSES: tuple[str, ...] = ("conv3d_dense", "conv3d_depthwise", "conv2d_dense", "conv2d_depthwise", "pointwise",
                               "matmul", "pooling", "elementwise", "data")

_CONV = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"}
_MATMUL = {"Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"}
_POOL = {"AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean",
         "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceProd"}
_FREE = {"Shape", "Constant", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "ConstantOfShape", "Size"}
_DATA = {"Transpose", "Concat", "Pad", "Slice", "Split", "Resize", "Upsample", "Tile", "Expand", "Gather",
         "GatherElements", "ScatterND", "DepthToSpace", "SpaceToDepth"}
# everything else that computes per element is elementwise
_ELEM_SIZE = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2, TensorProto.DOUBLE: 8,
              TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2,
              TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8,
              TensorProto.BOOL: 1}


@dataclass(frozen=True)
class GraphFeatures:
    """Per op class multiply-adds, bytes moved and node counts of one model at batch 1.

    ``input_shape``: (1, 3, T, H, W) of the graph's input.
    """

    input_shape: tuple[int, ...]
    macs: Mapping[str, float] = field(default_factory=dict)
    bytes: Mapping[str, float] = field(default_factory=dict)
    nodes: Mapping[str, int] = field(default_factory=dict)
    weight_planes: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_macs(self) -> float:
        return float(sum(self.macs.values()))

    @property
    def total_bytes(self) -> float:
        return float(sum(self.bytes.values()))

    @property
    def total_nodes(self) -> int:
        return int(sum(self.nodes.values()))

    @property
    def frames(self) -> int:
        return int(self.input_shape[2]) if len(self.input_shape) == 5 else 1

    @property
    def resolution(self) -> int:
        return int(self.input_shape[-1])

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "input_shape": list(self.input_shape), "macs": dict(self.macs),
                "bytes": dict(self.bytes), "nodes": dict(self.nodes), "weight_planes": dict(self.weight_planes)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "GraphFeatures":
        return cls(tuple(int(x) for x in d["input_shape"]), {str(k): float(v) for k, v in d["macs"].items()},
                   {str(k): float(v) for k, v in d["bytes"].items()}, {str(k): int(v) for k, v in d["nodes"].items()},
                   {str(k): float(v) for k, v in d.get("weight_planes", {}).items()})


def _shapes(proto: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (static shape, element type) of every value, initializer and graph input/output."""
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    g = proto.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out[vi.name] = (dims, t.elem_type)
    for init in g.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    for node in g.node:  # Constant nodes: their value's shape
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = (tuple(a.t.dims), a.t.data_type)
    return out


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape)) if all(d >= 0 for d in shape) else -1


def _classify_conv(weight: tuple[int, ...], group: int) -> str:
    kernel = weight[2:]
    if all(k == 1 for k in kernel):
        return "pointwise"
    depthwise = group > 1 and weight[1] == 1
    rank = "conv3d" if len(kernel) == 3 else "conv2d"
    return f"{rank}_{'depthwise' if depthwise else 'dense'}"


def graph_features(proto: onnx.ModelProto, where: str | Path = "model") -> GraphFeatures:
    """Features of a static-shape ONNX graph (see the module docstring).

    A node whose output shape shape inference cannot make static raises ``BadInput``.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and friends
        raise BadInput(f"{where}: ONNX shape inference failed ({str(e).splitlines()[0]})") from None
    shapes = _shapes(inferred)
    inits = {i.name for i in inferred.graph.initializer}
    inputs = [v for v in inferred.graph.input if v.name not in inits]
    if len(inputs) != 1 or inputs[0].name not in shapes or _numel(shapes[inputs[0].name][0]) <= 0:
        raise BadInput(f"{where}: expected one graph input with a static shape")
    macs = {c: 0.0 for c in OP_CLASSES}
    nbytes = {c: 0.0 for c in OP_CLASSES}
    nodes = {c: 0 for c in OP_CLASSES}
    planes = {c: 0.0 for c in OP_CLASSES}

    def size(name: str) -> int:
        if not name or name not in shapes:
            return 0
        shape, elem = shapes[name]
        n = _numel(shape)
        return max(n, 0) * _ELEM_SIZE.get(elem, 4)

    for node in inferred.graph.node:
        op = node.op_type
        if op in _FREE:
            continue
        outs = [shapes.get(o, ((-1,), 0))[0] for o in node.output if o]
        out_shape = outs[0] if outs else (-1,)
        out_n = _numel(out_shape)
        if out_n < 0:
            raise BadInput(f"{where}: node {node.name or op!r} ({op}) has no static output shape; "
                           "export with static shapes")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op in _CONV:
            w_name = node.input[3] if op == "QLinearConv" else node.input[1]
            weight = shapes.get(w_name, ((),))[0]
            if len(weight) < 3:
                raise BadInput(f"{where}: Conv node {node.name!r} has a weight of unknown shape")
            group = int(attrs.get("group", 1))
            cls = _classify_conv(weight, group)
            if op == "ConvTranspose":
                in_shape = shapes.get(node.input[0], ((-1,),))[0]
                work = max(_numel(in_shape), 0) * weight[1] * math.prod(weight[2:])
            else:
                work = out_n * weight[1] * math.prod(weight[2:])
            planes[cls] += float(size(w_name) * math.prod(out_shape[:1] + out_shape[2:-2]))
        elif op in _MATMUL:
            cls = "matmul"
            a_shape = shapes.get(node.input[0], ((-1,),))[0]
            k = a_shape[-1] if op != "Gemm" or not attrs.get("transA", 0) else a_shape[0]
            work = out_n * max(int(k), 0)
        elif op in _POOL:
            cls = "pooling"
            work = max(_numel(shapes.get(node.input[0], ((-1,),))[0]), 0)
        elif op in _DATA:
            cls, work = "data", 0
        else:
            cls, work = "elementwise", out_n
        macs[cls] += float(work)
        nbytes[cls] += float(sum(size(i) for i in node.input) + sum(size(o) for o in node.output))
        nodes[cls] += 1
    return GraphFeatures(tuple(shapes[inputs[0].name][0]), macs, nbytes, nodes, planes)


def onnx_file_features(path: str | Path) -> GraphFeatures:
    """``graph_features`` of an ONNX file."""
    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{path}: not a readable ONNX model ({str(e).splitlines()[0] if str(e) else e!r})") from None
    return graph_features(proto, path)
