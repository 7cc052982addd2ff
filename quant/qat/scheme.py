"""QAT schemes and the graphs they train.

    SCHEMES ("pow2", "int8"), ROUNDINGS ("half_up", "half_even"), TARGET_SCHEME (target -> scheme)
    qat_graph(model, scheme, fold_bn) -> the fp32 onnx.ModelProto QAT trains (constant-folded; int8: BN folded)
    int8_points(model) -> [tensor name]: the int8 scheme's activation quantization points
"""
from __future__ import annotations

from typing import Callable

import onnx

from edge.core.errors import BadInput
from quant.pow2 import fold_constants

SCHEMES = ("pow2", "int8")
# pow2 activation rounding: "half_up" = the device (quant.intsim's default, the DPU's rule), "half_even" = ONNX
# QuantizeLinear (the QDQ model on ONNX Runtime); weights, biases and the input are rounded on the host (half even)
ROUNDINGS = ("half_up", "half_even")
TARGET_SCHEME = {"fpga": "pow2", "onnxruntime": "int8", "openvino": "int8"}
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
INT8_POINT_OPS = frozenset({"Conv", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "GlobalAveragePool", "Concat",
                            "Sigmoid"})
_ACTS = frozenset({"Relu", "Clip"})


def qat_graph(model: onnx.ModelProto, scheme: str,
              fold_bn: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None) -> onnx.ModelProto:
    """The fp32 graph QAT trains for ``scheme``: pow2 expects the *lowered* fpga
    model (the caller lowers it) and returns it constant-folded as
    :func:`quant.pow2.quantize` sees it; int8 folds BatchNormalization into the
    convolutions with ``fold_bn`` (a copy of the model -> the folded model; the
    quantizers do the same before quantizing)."""
    if scheme not in SCHEMES:
        raise BadInput(f"QAT scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if scheme == "int8":
        if fold_bn is None:
            raise ValueError("qat_graph: the int8 scheme needs fold_bn (BatchNormalization folding)")
        model = fold_bn(onnx.ModelProto.FromString(model.SerializeToString()))
    return fold_constants(model)


def int8_points(model: onnx.ModelProto) -> list[str]:
    """Activation quantization points of the ``int8`` scheme: the network input and
    the outputs of :data:`INT8_POINT_OPS` (past a lone following Relu/Clip), not
    the graph outputs."""
    g = model.graph
    consts = {i.name for i in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    points = [i.name for i in g.input if i.name not in consts]
    for n in g.node:
        if n.op_type not in INT8_POINT_OPS:
            continue
        t = n.output[0]
        while t not in outputs and len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in _ACTS:
            t = consumers[t][0].output[0]
        if t not in outputs:
            points.append(t)
    return points


__all__ = ["INT8_POINT_OPS", "ROUNDINGS", "SCHEMES", "TARGET_SCHEME", "WEIGHT_OPS", "int8_points", "qat_graph"]
