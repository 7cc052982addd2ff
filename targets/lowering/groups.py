"""Grouped 2-D convolutions -> dense and depthwise ones (exact), for op sets that take
only those two kinds (Vitis AI DPU, FINN).

For a Conv with ``group`` g, C_in / g input and C_out / g output channels per group:

* C_in / g > 1: g channel Slices, g dense Convs (the group's weights and bias),
  one Concat over channels.
* C_in / g == 1 and C_out / g = m > 1 (depthwise with channel multiplier m): a
  1x1 Conv with 0/1 weights repeats every input channel m times (channel
  c * m + k = channel c, exact), then a depthwise Conv over C_in * m channels.
"""
from __future__ import annotations

import numpy as np
import onnx

from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph
from targets.opset import OpSet


def split_grouped_convs(g: Graph, opset: OpSet) -> int:
    """Rewrite every 4-D Conv the op set rejects as grouped (see module docstring)."""
    rule = opset.rule("Conv")
    if rule is None or not rule.groups or "grouped" in rule.groups:
        return 0
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in g.nodes:
        new = _split(g, node) if node.op_type == "Conv" else None
        if new is None:
            nodes.append(node)
        else:
            nodes += new
            count += 1
    g.nodes = nodes
    return count


def _split(g: Graph, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    attrs = attrs_of(node)
    group = int(attrs.get("group", 1))  # type: ignore[arg-type]
    x_shape = g.static_shape(node.input[0])
    w = g.const(node.input[1])
    bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if group == 1 or x_shape is None or len(x_shape) != 4 or w is None or w.ndim != 4:
        return None
    if len(node.input) > 2 and node.input[2] and bias is None:
        return None
    cin, cout = x_shape[1], w.shape[0]
    cin_g, cout_g = cin // group, cout // group
    if cin_g == 1 and cout_g == 1:
        return None  # plain depthwise
    hint = node.name or "conv"
    rest = {k: v for k, v in attrs.items() if k != "group"}
    et = g.elem_type(node.input[0])
    out: list[onnx.NodeProto] = []
    if cin_g == 1:  # depthwise with channel multiplier: repeat channels, then depthwise
        m = cout_g
        expand = np.zeros((cin * m, cin, 1, 1), dtype=w.dtype)
        expand[np.arange(cin * m), np.repeat(np.arange(cin), m)] = 1
        rep = g.make("Conv", [node.input[0], g.add_const(expand, f"{hint}_repeat_w")], f"{hint}_repeat",
                     elem_type=et, shape=(x_shape[0], cin * m, x_shape[2], x_shape[3]), kernel_shape=[1, 1])
        inputs = [rep.output[0], g.add_const(w, f"{hint}_dw_w")] + ([node.input[2]] if bias is not None else [])
        out += [rep, g.make("Conv", inputs, f"{hint}_dw", outputs=list(node.output), group=cin * m, **rest)]
        return out
    parts = []
    for k in range(group):
        sl = g.make("Slice", [node.input[0], g.ints([k * cin_g], "c0"), g.ints([(k + 1) * cin_g], "c1"),
                              g.ints([1], "ax1")], f"{hint}_g{k}_in", elem_type=et,
                    shape=(x_shape[0], cin_g, x_shape[2], x_shape[3]))
        inputs = [sl.output[0], g.add_const(np.ascontiguousarray(w[k * cout_g:(k + 1) * cout_g]), f"{hint}_g{k}_w")]
        if bias is not None:
            inputs.append(g.add_const(np.ascontiguousarray(bias[k * cout_g:(k + 1) * cout_g]), f"{hint}_g{k}_b"))
        conv = g.make("Conv", inputs, f"{hint}_g{k}", elem_type=et, **rest)
        out += [sl, conv]
        parts.append(conv.output[0])
    out.append(g.make("Concat", parts, f"{hint}_concat", outputs=list(node.output), axis=1))
    return out
