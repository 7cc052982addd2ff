"""BatchNormalization: folded into the Conv before it, or (standalone) a 1x1
depthwise Conv.  Both exact up to float rounding:

    BN(y) = (y - mean) * s + beta,   s = gamma / sqrt(var + eps)
    BN(conv(x, W, b)) = conv(x, W * s[:, None, ...], (b - mean) * s + beta)
"""
from __future__ import annotations

import numpy as np
import onnx

from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph
from targets.opset import OpSet


def _bn_params(g: Graph, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) of an inference BatchNormalization with constant parameters."""
    if len([o for o in node.output if o]) != 1 or len(node.input) < 5:
        return None
    vals = [g.const(i) for i in node.input[1:5]]
    if any(v is None for v in vals):
        return None
    gamma, beta, mean, var = (v.astype(np.float64) for v in vals)  # type: ignore[union-attr]
    eps = float(attrs_of(node).get("epsilon", 1e-5))  # type: ignore[arg-type]
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def fold_batchnorm(g: Graph, opset: OpSet) -> int:
    """Fold every BatchNormalization that directly follows a Conv with constant weights."""
    consumers = g.consumers()
    producers = g.producers()
    outputs = g.output_names()
    drop: set[int] = set()
    replace: dict[int, onnx.NodeProto] = {}
    for node in g.nodes:
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        conv = producers.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or id(conv) in replace or conv.input[0] == "":
            continue
        if len(consumers.get(conv.output[0], [])) != 1 or conv.output[0] in outputs:
            continue
        w = g.const(conv.input[1])
        params = _bn_params(g, node)
        if w is None or params is None:
            continue
        b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0], w.dtype)
        if b is None:
            continue
        scale, shift = params
        w2 = (w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        b2 = (b.astype(np.float64) * scale + shift).astype(w.dtype)
        hint = conv.name or "conv"
        new = onnx.NodeProto()
        new.CopyFrom(conv)
        del new.input[:]
        new.input.extend([conv.input[0], g.add_const(w2, f"{hint}_wfold"), g.add_const(b2, f"{hint}_bfold")])
        new.output[0] = node.output[0]
        replace[id(conv)] = new
        drop.add(id(node))
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return len(drop)


def batchnorm_to_conv(g: Graph, opset: OpSet) -> int:
    """Standalone 4-D BatchNormalization -> 1x1 depthwise Conv (when the set lacks BN)."""
    if opset.allows("BatchNormalization"):
        return 0
    count = 0
    nodes = []
    for node in g.nodes:
        params = _bn_params(g, node) if node.op_type == "BatchNormalization" else None
        if params is None or g.rank(node.input[0]) != 4:
            nodes.append(node)
            continue
        scale, shift = params
        dtype = g.np_dtype(node.input[0])
        c = scale.shape[0]
        w = g.add_const(scale.reshape(c, 1, 1, 1).astype(dtype), f"{node.name or 'bn'}_w")
        b = g.add_const(shift.astype(dtype), f"{node.name or 'bn'}_b")
        nodes.append(g.make("Conv", [node.input[0], w, b], node.name or "bn_conv", outputs=[node.output[0]],
                            group=c, kernel_shape=[1, 1]))
        count += 1
    g.nodes = nodes
    return count
