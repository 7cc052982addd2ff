"""Rank-5 -> rank-4: carry every (1, d1, d2, d3, d4) tensor as a 4-D tensor.

Each lowered value is a 4-D *physical* tensor plus a permutation ``perm``:
physical axis j holds logical axis ``perm[j] + 1`` (the batch axis of size 1 is
dropped).  For (1, C, T, H, W) the working layout is ``TCHW = (1, 0, 2, 3)``:
(T, C, H, W), frames in the batch axis, which is what a 2-D convolution
wants.  Measured on this machine (shared/reference.md), keeping the whole
network in this layout with temporal taps as pad + slices along axis 0 was the
fastest lowered form; permuting around every conv was the slowest.

This module holds the pass's state: ``Lowered`` (a value's physical name, perm
and logical shape), ``LayoutPass(graph, handlers)`` (``get`` / ``to_perm`` /
``materialize`` / ``reshape_to`` / ``emit_like``, ``run() -> nodes``) and the
helpers the handlers share (``rank5_in``, ``used_outputs``).
The per-op handlers and ``lower_rank5(graph) -> (nodes, rewritten)`` are in
:mod:`targets.lowering.layout_ops`.  Ops are rewritten where they meet a rank-5
value:

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
from typing import Callable, Mapping

import onnx

from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph, Shape

log = logging.getLogger(__name__)

Perm = tuple[int, int, int, int]
TCHW: Perm = (1, 0, 2, 3)
IDENTITY: Perm = (0, 1, 2, 3)
Handler = Callable[["LayoutPass", onnx.NodeProto], bool]  # True when the node was rewritten


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

    def __init__(self, g: Graph, handlers: Mapping[str, Handler]) -> None:
        self.g = g
        self.handlers = handlers
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
            handler = self.handlers.get(node.op_type)
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


def rank5_in(p: LayoutPass, node: onnx.NodeProto, i: int = 0) -> bool:
    """Input ``i`` is a rank-5 tensor that is not a constant."""
    v = node.input[i] if len(node.input) > i else ""
    return bool(v) and (v in p.env or (p.g.rank(v) == 5 and v not in p.g.consts))


def used_outputs(node: onnx.NodeProto) -> int:
    return sum(1 for o in node.output if o)
