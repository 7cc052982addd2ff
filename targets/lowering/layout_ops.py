"""The layout pass's per-op rewrites (see :mod:`targets.lowering.layout`): one
handler ``h_<op>(pass, node) -> bool`` per ONNX op kind, ``HANDLERS`` (op type ->
handler) and the entry point ``lower_rank5(graph) -> (nodes, rewritten count)``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from targets.lowering.conv3d import lower_conv3d
from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph, Shape, ValueInfo
from targets.lowering.layout import IDENTITY, TCHW, LayoutPass, Lowered, rank5_in, used_outputs
from targets.lowering.pooling import lower_global_pool3d, lower_pool3d
from targets.lowering.window import Window

UNARY = frozenset({
    "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus",
    "Softsign", "ThresholdedRelu", "Mish", "Gelu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Erf", "Identity", "Cast", "Dropout", "Sin", "Cos", "IsNaN", "IsInf", "Not",
})
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Equal", "Greater", "Less",
    "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Where", "Mod",
})
REDUCE = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd"})
RESHAPE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def h_conv(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    w_shape = g.static_shape(node.input[1])
    if not rank5_in(p, node) or w_shape is None or len(w_shape) != 5:
        return False
    attrs = attrs_of(node)
    x = p.to_perm(p.get(node.input[0]), TCHW)
    win = Window.from_attrs(attrs, x.shape[2:], w_shape[2:], node.name or "Conv")
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    y, (t, c, h, w) = lower_conv3d(g, x.name, x.phys_shape, node.input[1], bias, win, int(attrs.get("group", 1)),
                                   node.name or "conv3d", p.out)
    p.env[node.output[0]] = Lowered(y, TCHW, (1, c, t, h, w))
    return True


def h_pool(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node) or used_outputs(node) != 1:
        return False
    attrs = attrs_of(node)
    x = p.to_perm(p.get(node.input[0]), TCHW)
    win = Window.from_attrs(attrs, x.shape[2:], (), node.name or node.op_type, pooling=True)
    y, (t, c, h, w) = lower_pool3d(p.g, node.op_type, x.name, x.phys_shape, win,
                                   int(attrs.get("count_include_pad", 0)), node.name or "pool3d", p.out)
    p.env[node.output[0]] = Lowered(y, TCHW, (1, c, t, h, w))
    return True


def h_global_pool(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node):
        return False
    x = p.to_perm(p.get(node.input[0]), TCHW)
    y, (t, c, h, w) = lower_global_pool3d(p.g, node.op_type, x.name, x.phys_shape, node.name or "gpool", p.out)
    p.env[node.output[0]] = Lowered(y, TCHW, (1, c, 1, 1, 1))
    return True


def h_reduce(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    if not rank5_in(p, node):
        return False
    attrs = attrs_of(node)
    if len(node.input) > 1 and node.input[1]:
        axes_v = g.const(node.input[1])
        if axes_v is None:
            return False
        axes = [int(a) for a in axes_v.reshape(-1)]
    else:
        axes = [int(a) for a in attrs.get("axes", [])]  # type: ignore[union-attr]
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return False
        axes = list(range(5))
    lv = p.get(node.input[0])
    axes_set = {a % 5 for a in axes}
    reduce_axes = sorted(a for a in axes_set if lv.shape[a] != 1)  # size-1 axes: nothing to reduce
    y = lv
    if reduce_axes and node.op_type in ("ReduceMean", "ReduceMax") and 1 not in reduce_axes:
        lv = y = p.to_perm(lv, TCHW)  # space/time reductions become pooling in (T, C, H, W)
    if reduce_axes:
        if reduce_axes == [2, 3, 4] and node.op_type in ("ReduceMean", "ReduceMax"):
            y = _reduce_global(p, node, lv)
        else:
            phys = sorted(lv.phys_axis(a) for a in reduce_axes)
            shape = tuple(1 if i in axes_set else d for i, d in enumerate(lv.shape))
            red = Lowered("", lv.perm, shape)
            n = _reduce_node(g, node.op_type, lv.name, phys, red.phys_shape, node.name or node.op_type)
            p.out.append(n)
            y = Lowered(n.output[0], lv.perm, shape)
    shape = tuple(1 if i in axes_set else d for i, d in enumerate(lv.shape))
    y = Lowered(y.name, y.perm, shape)
    if int(attrs.get("keepdims", 1)):
        p.env[node.output[0]] = y
    else:
        p.reshape_to(y, node.output[0])
    return True


def _reduce_global(p: LayoutPass, node: onnx.NodeProto, lv: Lowered) -> Lowered:
    """Mean/max over (T, H, W) of a (T, C, H, W) value: global pools."""
    op = "GlobalAveragePool" if node.op_type == "ReduceMean" else "GlobalMaxPool"
    y, _ = lower_global_pool3d(p.g, op, lv.name, lv.phys_shape, node.name or "reduce", p.out)
    return Lowered(y, TCHW, (1, lv.shape[1], 1, 1, 1))


def _reduce_node(g: Graph, op: str, x: str, axes: list[int], shape: Shape, hint: str) -> onnx.NodeProto:
    if g.opset >= 18 or (op == "ReduceSum" and g.opset >= 13):
        return g.make(op, [x, g.ints(axes, "axes")], hint, shape=shape, elem_type=g.elem_type(x), keepdims=1)
    return g.make(op, [x], hint, shape=shape, elem_type=g.elem_type(x), axes=axes, keepdims=1)


def h_batchnorm(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node) or used_outputs(node) != 1:
        return False
    x = p.to_perm(p.get(node.input[0]), TCHW)
    p.emit_like(node, [x.name, *node.input[1:]], TCHW)
    return True


def h_unary(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node) or used_outputs(node) != 1:
        return False
    x = p.get(node.input[0])
    p.emit_like(node, [x.name, *node.input[1:]], x.perm)
    return True


def h_elementwise(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    out_shape = g.static_shape(node.output[0])
    if out_shape is None or len(out_shape) != 5 or out_shape[0] != 1:
        return False
    lowered = [p.get(i) for i in node.input if i and (i in p.env or (g.rank(i) == 5 and i not in g.consts))]
    if not lowered:
        return False
    perm = TCHW if any(lv.perm == TCHW for lv in lowered) else lowered[0].perm
    inputs: list[str] = []
    for i in node.input:
        if not i:
            inputs.append(i)
        elif i in p.env or (g.rank(i) == 5 and i not in g.consts):
            inputs.append(p.to_perm(p.get(i), perm).name)
        elif (c := g.const(i)) is not None:
            if c.ndim == 0:
                inputs.append(i)
                continue
            c5 = c.reshape((1,) * (5 - c.ndim) + c.shape)
            inputs.append(g.add_const(np.ascontiguousarray(c5[0].transpose(perm)), f"{i}_{''.join(map(str, perm))}"))
        else:
            s = g.static_shape(i)
            if s is None:
                return False
            s5 = (1,) * (5 - len(s)) + s
            node4 = g.make("Reshape", [i, g.ints(s5[1:], "shape4")], f"{i}_4d", shape=s5[1:], elem_type=g.elem_type(i))
            p.out.append(node4)
            inputs.append(p.to_perm(Lowered(node4.output[0], IDENTITY, s5), perm).name)
    p.emit_like(node, inputs, perm)
    return True


def h_transpose(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node):
        return False
    q = [int(a) for a in attrs_of(node).get("perm", [4, 3, 2, 1, 0])]  # type: ignore[union-attr]
    if q[0] != 0:
        return False
    lv = p.get(node.input[0])
    perm = tuple(q.index(lv.perm[j] + 1) - 1 for j in range(4))
    p.env[node.output[0]] = Lowered(lv.name, perm, p.g.static_shape(node.output[0]))  # type: ignore[arg-type]
    return True


def h_reshape(p: LayoutPass, node: onnx.NodeProto) -> bool:
    out_shape = p.g.static_shape(node.output[0])
    if out_shape is None or (len(out_shape) == 5 and out_shape[0] != 1):
        return False
    if rank5_in(p, node):
        p.reshape_to(p.get(node.input[0]), node.output[0])
    elif p.g.static_shape(node.input[0]) is not None:
        p.reshape_to(node.input[0], node.output[0])
    else:
        return False
    return True


def _logical_axes(node: onnx.NodeProto, g: Graph) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(starts, ends, axes, steps) of a Slice (opset >= 10), constants only."""
    vals = []
    for k in range(1, 5):
        if len(node.input) > k and node.input[k]:
            v = g.const(node.input[k])
            if v is None:
                return None
            vals.append([int(x) for x in v.reshape(-1)])
        else:
            vals.append(None)
    starts, ends, axes, steps = vals
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return starts, ends, axes, steps  # type: ignore[return-value]


def h_slice(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    if not rank5_in(p, node) or g.opset < 10:
        return False
    spec = _logical_axes(node, g)
    if spec is None:
        return False
    starts, ends, axes, steps = spec
    lv = p.get(node.input[0])
    keep = [(s, e, a % 5, st) for s, e, a, st in zip(starts, ends, axes, steps) if a % 5 != 0]
    if len(keep) != len(axes):  # a slice over the batch axis of size 1 must keep it
        out = g.static_shape(node.output[0])
        if out is None or out[0] != 1:
            return False
    if not keep:
        p.env[node.output[0]] = lv
        return True
    s, e, a, st = zip(*keep)
    inputs = [lv.name, g.ints(s, "starts"), g.ints(e, "ends"), g.ints([lv.phys_axis(x) for x in a], "axes"),
              g.ints(st, "steps")]
    p.emit_like(node, inputs, lv.perm)
    return True


def h_split(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    if not rank5_in(p, node) or g.opset < 13:
        return False
    attrs = attrs_of(node)
    axis = int(attrs.get("axis", 0)) % 5
    if axis == 0:
        return False
    lv = p.get(node.input[0])
    outs = [o for o in node.output]
    shapes = [g.static_shape(o) for o in outs if o]
    if any(s is None for s in shapes):
        return False
    sizes = [s[axis] for s in shapes]  # type: ignore[index]
    n = g.make("Split", [lv.name, g.ints(sizes, "split")], node.name or "Split", n_out=len(outs),
               axis=lv.phys_axis(axis))
    p.out.append(n)
    for o, new in zip(outs, n.output):
        if o:
            p.env[o] = Lowered(new, lv.perm, g.static_shape(o))  # type: ignore[arg-type]
    return True


def h_concat(p: LayoutPass, node: onnx.NodeProto) -> bool:
    axis = int(attrs_of(node).get("axis", 0)) % 5
    if axis == 0 or not all(i in p.env or p.lowerable(i) for i in node.input):
        return False
    lvs = [p.get(i) for i in node.input]
    perm = lvs[0].perm
    p.emit_like(node, [p.to_perm(lv, perm).name for lv in lvs], perm, axis=lvs[0].phys_axis(axis))
    return True


def h_pad(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    if not rank5_in(p, node) or g.opset < 11:
        return False
    pads_v = g.const(node.input[1]) if len(node.input) > 1 else None
    if pads_v is None:
        return False
    pads = [int(v) for v in pads_v.reshape(-1)]
    if len(node.input) > 3 and node.input[3]:
        axes_v = g.const(node.input[3])
        if axes_v is None:
            return False
        full = [0] * 10
        axes = [int(a) % 5 for a in axes_v.reshape(-1)]
        for i, a in enumerate(axes):
            full[a], full[5 + a] = pads[i], pads[len(axes) + i]
        pads = full
    if pads[0] or pads[5]:
        return False
    lv = p.get(node.input[0])
    phys = [pads[1 + a] for a in lv.perm] + [pads[6 + a] for a in lv.perm]
    inputs = [lv.name, g.ints(phys, "pads")]
    if len(node.input) > 2 and node.input[2]:
        inputs.append(node.input[2])
    p.emit_like(node, inputs, lv.perm)
    return True


def h_matmul(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    b = g.const(node.input[1])
    if not rank5_in(p, node) or b is None or b.ndim != 2:
        return False
    lv = p.get(node.input[0])
    others = [a for a in lv.perm if a != 3]
    x = p.to_perm(lv, (others[0], 3, others[1], others[2]))
    weight = g.add_const(np.ascontiguousarray(b.T.reshape(b.shape[1], b.shape[0], 1, 1)), f"{node.name}_w")
    out_shape = g.static_shape(node.output[0])
    y = Lowered("", x.perm, out_shape)  # type: ignore[arg-type]
    conv = g.make("Conv", [x.name, weight], node.name or "matmul_1x1", shape=y.phys_shape,
                  elem_type=g.elem_type(node.output[0]), kernel_shape=[1, 1])
    p.out.append(conv)
    p.env[node.output[0]] = Lowered(conv.output[0], x.perm, out_shape)  # type: ignore[arg-type]
    return True


def h_softmax(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not rank5_in(p, node) or p.g.opset < 13:
        return False
    axis = int(attrs_of(node).get("axis", -1)) % 5
    if axis == 0:
        return False
    lv = p.get(node.input[0])
    p.emit_like(node, [lv.name], lv.perm, axis=lv.phys_axis(axis))
    return True


def h_shape(p: LayoutPass, node: onnx.NodeProto) -> bool:
    shape = p.g.static_shape(node.input[0])
    if shape is None:
        return False
    a = attrs_of(node)
    start, end = int(a.get("start", 0)), a.get("end")
    value = np.asarray(shape[start:None if end is None else int(end)], dtype=np.int64)  # type: ignore[arg-type]
    p.g.consts[node.output[0]] = value
    p.g.info[node.output[0]] = ValueInfo(tuple(value.shape), onnx.TensorProto.INT64)
    return True


HANDLERS: dict[str, Callable[[LayoutPass, onnx.NodeProto], bool]] = {
    "Conv": h_conv,
    "MaxPool": h_pool,
    "AveragePool": h_pool,
    "GlobalAveragePool": h_global_pool,
    "GlobalMaxPool": h_global_pool,
    "BatchNormalization": h_batchnorm,
    "Transpose": h_transpose,
    "Slice": h_slice,
    "Split": h_split,
    "Concat": h_concat,
    "Pad": h_pad,
    "MatMul": h_matmul,
    "Softmax": h_softmax,
    "LogSoftmax": h_softmax,
    "Shape": h_shape,
    **{op: h_reduce for op in REDUCE},
    **{op: h_unary for op in UNARY},
    **{op: h_elementwise for op in ELEMENTWISE},
    **{op: h_reshape for op in RESHAPE},
}


def lower_rank5(g: Graph) -> tuple[list[onnx.NodeProto], int]:
    """The graph's nodes with every rank-5 value carried as rank 4; (nodes, rewritten count)."""
    p = LayoutPass(g, HANDLERS)
    nodes = p.run()
    return nodes, p.rewritten
