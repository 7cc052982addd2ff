"""Rank-5 -> rank-4: carry every (1, d1, d2, d3, d4) tensor as a 4-D tensor.

Each lowered value is a 4-D *physical* tensor plus a permutation ``perm``:
physical axis j holds logical axis ``perm[j] + 1`` (the batch axis of size 1 is
dropped).  For (1, C, T, H, W) the working layout is ``TCHW = (1, 0, 2, 3)``:
(T, C, H, W), frames in the batch axis, which is what a 2-D convolution
wants.  Measured on this machine (shared/reference.md), keeping the whole
network in this layout with temporal taps as pad + slices along axis 0 was the
fastest lowered form; permuting around every conv was the slowest.

Ops are rewritten where they meet a rank-5 value:

* Conv (3-D) and 3-D pooling: :mod:`conv3d`, :mod:`pooling`.
* element-wise ops: run on the physical tensors; constant operands are
  broadcast to rank 5 and permuted like the data.
* Transpose: no node at all, only ``perm`` changes.
* Reduce*, Global*Pool, BatchNormalization, Slice, Split, Concat, Pad,
  Softmax: the same op on the matching physical axes.
* MatMul with a constant (K, M) matrix over the last logical axis (a Linear
  layer applied channels-last): a 1x1 Conv.
* Reshape / Flatten / Squeeze / Unsqueeze: a Reshape of the physical tensor in
  logical order.
* anything else (or batch != 1, or unknown shapes): the node is kept and its
  inputs are turned back into (1, d1, d2, d3, d4) first, so the rewrite stays
  exact and the checker reports the node.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from targets.lowering.conv3d import lower_conv3d
from targets.lowering.graph import Graph, Shape, ValueInfo, attrs_of
from targets.lowering.pooling import lower_global_pool3d, lower_pool3d
from targets.lowering.window import Window

log = logging.getLogger(__name__)

Perm = tuple[int, int, int, int]
TCHW: Perm = (1, 0, 2, 3)
IDENTITY: Perm = (0, 1, 2, 3)

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


@dataclass(frozen=True)
class Lowered:
    """A logical (1, d1, d2, d3, d4) value carried as the 4-D value ``name``."""

    name: str
    perm: Perm
    shape: Shape

    @property
    def phys_shape(self) -> Shape:
        return tuple(self.shape[1 + a] for a in self.perm)

    def phys_axis(self, logical_axis: int) -> int:
        """Physical axis of logical axis 1..4."""
        return self.perm.index(logical_axis - 1)


class LayoutPass:
    """One walk over the graph in order, rewriting nodes that touch rank-5 values."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.env: dict[str, Lowered] = {}
        self.out: list[onnx.NodeProto] = []
        self._perm_cache: dict[tuple[str, Perm, Perm], Lowered] = {}
        self._mat_cache: dict[tuple[str, Perm, Shape], str] = {}
        self.rewritten = 0
        self.kept: list[str] = []

    # ------------------------------------------------------------------ values

    def lowerable(self, name: str) -> bool:
        if name in self.env:
            return True
        s = self.g.static_shape(name)
        return s is not None and len(s) == 5 and s[0] == 1

    def get(self, name: str) -> Lowered:
        """The lowered form of a rank-5 value (a graph input or a kept node's output: one Reshape)."""
        if name in self.env:
            return self.env[name]
        shape = self.g.static_shape(name)
        assert shape is not None and len(shape) == 5 and shape[0] == 1, name
        node = self.g.make("Reshape", [name, self.g.ints(shape[1:], "shape4")], f"{name}_4d", shape=shape[1:],
                           elem_type=self.g.elem_type(name))
        self.out.append(node)
        lv = Lowered(node.output[0], IDENTITY, shape)
        self.env[name] = lv
        return lv

    def to_perm(self, lv: Lowered, perm: Perm) -> Lowered:
        """``lv`` with physical layout ``perm`` (a Reshape when only size-1 axes move)."""
        if lv.perm == perm:
            return lv
        key = (lv.name, lv.perm, perm)
        if key in self._perm_cache:
            return self._perm_cache[key]
        t = [lv.perm.index(perm[j]) for j in range(4)]
        new = Lowered("", perm, lv.shape)
        phys = lv.phys_shape
        moved = [i for i in t if phys[i] != 1]
        et = self.g.elem_type(lv.name)
        if moved == sorted(moved):
            node = self.g.make("Reshape", [lv.name, self.g.ints(new.phys_shape, "shape4")], f"{lv.name}_relabel",
                               shape=new.phys_shape, elem_type=et)
        else:
            node = self.g.make("Transpose", [lv.name], f"{lv.name}_perm", shape=new.phys_shape, elem_type=et,
                               perm=t)
        self.out.append(node)
        new = Lowered(node.output[0], perm, lv.shape)
        self._perm_cache[key] = new
        return new

    def materialize(self, lv: Lowered, out_name: str | None = None) -> str:
        """The (1, d1, d2, d3, d4) tensor of ``lv`` (named ``out_name`` when given)."""
        key = (lv.name, lv.perm, lv.shape)
        if out_name is None and key in self._mat_cache:
            return self._mat_cache[key]
        ident = self.to_perm(lv, IDENTITY)
        node = self.g.make("Reshape", [ident.name, self.g.ints(lv.shape, "shape5")], f"{lv.name}_5d",
                           outputs=[out_name] if out_name else None, shape=lv.shape,
                           elem_type=self.g.elem_type(lv.name))
        self.out.append(node)
        if out_name is None:
            self._mat_cache[key] = node.output[0]
        return node.output[0]

    def reshape_to(self, src: Lowered | str, out: str) -> None:
        """Define ``out`` (a node output) as ``src`` (lowered, or a plain value) reshaped to
        ``out``'s static shape; a rank-5 ``out`` becomes lowered."""
        shape = self.g.static_shape(out)
        assert shape is not None
        if isinstance(src, Lowered):
            src = self.to_perm(src, IDENTITY).name
        if len(shape) == 5:
            node = self.g.make("Reshape", [src, self.g.ints(shape[1:], "shape4")], f"{out}_4d", shape=shape[1:],
                               elem_type=self.g.elem_type(src))
            self.out.append(node)
            self.env[out] = Lowered(node.output[0], IDENTITY, shape)
        else:
            self.out.append(self.g.make("Reshape", [src, self.g.ints(shape, "shape")], f"{out}_reshape",
                                        outputs=[out], shape=shape, elem_type=self.g.elem_type(src)))

    def emit_like(self, node: onnx.NodeProto, inputs: list[str], perm: Perm, **attrs: object) -> None:
        """Copy ``node`` onto physical ``inputs``; its rank-5 output becomes lowered with ``perm``."""
        out = node.output[0]
        shape = self.g.static_shape(out)
        assert shape is not None
        new_attrs = {**attrs_of(node), **attrs}
        lv = Lowered("", perm, shape)
        n = self.g.make(node.op_type, inputs, node.name or node.op_type, shape=lv.phys_shape,
                        elem_type=self.g.elem_type(out), **new_attrs)
        self.out.append(n)
        self.env[out] = Lowered(n.output[0], perm, shape)

    # ------------------------------------------------------------------ walk

    def run(self) -> list[onnx.NodeProto]:
        g = self.g
        for node in g.nodes:
            touches = (any(i in self.env or g.rank(i) == 5 for i in node.input if i)
                       or any(g.rank(o) == 5 for o in node.output if o))
            if not touches or node.domain not in ("", "ai.onnx"):
                self.keep(node)
                continue
            handler = HANDLERS.get(node.op_type)
            if handler is not None and self.ready(node) and handler(self, node):
                self.rewritten += 1
            else:
                self.keep(node)
                if any(g.rank(v) == 5 for v in [*node.input, *node.output] if v):
                    self.kept.append(f"{node.name or node.op_type} ({node.op_type})")
        for o in g.outputs:
            if o.name in self.env:
                self.materialize(self.env[o.name], o.name)
        if self.kept:
            log.info("layout: %d rank-5 node(s) kept as they are: %s", len(self.kept), ", ".join(self.kept[:8]))
        return self.out

    def ready(self, node: onnx.NodeProto) -> bool:
        """Every rank-5 input/output is static with batch 1, every output has a known shape."""
        data = node.input[:1] if node.op_type == "Conv" else node.input  # Conv weights may be any tensor
        for v in [*data, *node.output]:
            if v and v not in self.env and v not in self.g.consts and self.g.rank(v) == 5 \
                    and not self.lowerable(v):
                return False
        return all(self.g.static_shape(o) is not None for o in node.output if o)

    def keep(self, node: onnx.NodeProto) -> None:
        if any(i in self.env for i in node.input):
            node = _with_inputs(node, [self.materialize(self.env[i]) if i in self.env else i for i in node.input])
        self.out.append(node)


def _with_inputs(node: onnx.NodeProto, inputs: list[str]) -> onnx.NodeProto:
    new = onnx.NodeProto()
    new.CopyFrom(node)
    del new.input[:]
    new.input.extend(inputs)
    return new


def _rank5_in(p: LayoutPass, node: onnx.NodeProto, i: int = 0) -> bool:
    """Input ``i`` is a rank-5 tensor that is not a constant."""
    v = node.input[i] if len(node.input) > i else ""
    return bool(v) and (v in p.env or (p.g.rank(v) == 5 and v not in p.g.consts))


def _used_outputs(node: onnx.NodeProto) -> int:
    return sum(1 for o in node.output if o)


# ----------------------------------------------------------------------------- handlers

def h_conv(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    w_shape = g.static_shape(node.input[1])
    if not _rank5_in(p, node) or w_shape is None or len(w_shape) != 5:
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
    if not _rank5_in(p, node) or _used_outputs(node) != 1:
        return False
    attrs = attrs_of(node)
    x = p.to_perm(p.get(node.input[0]), TCHW)
    win = Window.from_attrs(attrs, x.shape[2:], (), node.name or node.op_type, pooling=True)
    y, (t, c, h, w) = lower_pool3d(p.g, node.op_type, x.name, x.phys_shape, win,
                                   int(attrs.get("count_include_pad", 0)), node.name or "pool3d", p.out)
    p.env[node.output[0]] = Lowered(y, TCHW, (1, c, t, h, w))
    return True


def h_global_pool(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not _rank5_in(p, node):
        return False
    x = p.to_perm(p.get(node.input[0]), TCHW)
    y, (t, c, h, w) = lower_global_pool3d(p.g, node.op_type, x.name, x.phys_shape, node.name or "gpool", p.out)
    p.env[node.output[0]] = Lowered(y, TCHW, (1, c, 1, 1, 1))
    return True


def h_reduce(p: LayoutPass, node: onnx.NodeProto) -> bool:
    g = p.g
    if not _rank5_in(p, node):
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
    if not _rank5_in(p, node) or _used_outputs(node) != 1:
        return False
    x = p.to_perm(p.get(node.input[0]), TCHW)
    p.emit_like(node, [x.name, *node.input[1:]], TCHW)
    return True


def h_unary(p: LayoutPass, node: onnx.NodeProto) -> bool:
    if not _rank5_in(p, node) or _used_outputs(node) != 1:
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
    if not _rank5_in(p, node):
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
    if _rank5_in(p, node):
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
    if not _rank5_in(p, node) or g.opset < 10:
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
    if not _rank5_in(p, node) or g.opset < 13:
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
    if not _rank5_in(p, node) or g.opset < 11:
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
    if not _rank5_in(p, node) or b is None or b.ndim != 2:
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
    if not _rank5_in(p, node) or p.g.opset < 13:
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
    p = LayoutPass(g)
    nodes = p.run()
    return nodes, p.rewritten


__all__ = ["Lowered", "LayoutPass", "lower_rank5", "TCHW", "IDENTITY"]
