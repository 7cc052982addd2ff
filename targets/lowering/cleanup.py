"""Exact clean-ups of the 4-D graph: identities, global pooling, reductions as
pooling, Squeeze/Unsqueeze as Reshape, Reshape chains and Transposes."""
from __future__ import annotations

import math

import onnx

from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph
from targets.lowering.window import Window
from targets.opset import OpSet


def _rename(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    for n in nodes:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new
        for k, o in enumerate(n.output):
            if o == old:
                n.output[k] = new


def bypass(g: Graph, nodes: list[onnx.NodeProto], node: onnx.NodeProto) -> bool:
    """Remove a node whose output equals its input 0; False when it must stay (graph I/O)."""
    src, dst = node.input[0], node.output[0]
    outputs = g.output_names()
    graph_inputs = {i.name for i in g.inputs}
    if dst in outputs:
        if src in outputs or src in graph_inputs or src in g.consts:
            return False
        nodes.remove(node)
        _rename(nodes, src, dst)
        return True
    nodes.remove(node)
    _rename(nodes, dst, src)
    return True


def remove_identities(g: Graph, opset: OpSet) -> int:
    """Identity and inference-mode Dropout nodes."""
    count = 0
    for node in list(g.nodes):
        if node.op_type in ("Identity", "Dropout") and len([o for o in node.output if o]) == 1:
            if bypass(g, g.nodes, node):
                count += 1
    return count


def name_nodes(g: Graph, opset: OpSet) -> int:
    """Give unnamed nodes unique names (the checker names nodes in its reasons)."""
    count = 0
    seen: set[str] = set()
    for node in g.nodes:
        if not node.name or node.name in seen:
            node.name = g.fresh(f"{node.op_type}_{node.output[0] if node.output else ''}")
            count += 1
        seen.add(node.name)
    return count


def global_pools(g: Graph, opset: OpSet) -> int:
    """A 2-D Max/AveragePool whose unpadded window covers the whole map -> Global*Pool."""
    count = 0
    nodes = []
    for node in g.nodes:
        shape = g.static_shape(node.input[0]) if node.input else None
        if (node.op_type in ("MaxPool", "AveragePool") and shape is not None and len(shape) == 4
                and len([o for o in node.output if o]) == 1 and opset.allows("Global" + node.op_type)):
            win = Window.from_attrs(attrs_of(node), shape[2:], (), node.name, pooling=True)
            if (win.kernel == shape[2:] and not any(win.pads_begin + win.pads_end)
                    and all(d == 1 for d in win.dilations)):
                nodes.append(g.make("Global" + node.op_type, [node.input[0]], node.name, outputs=list(node.output)))
                count += 1
                continue
        nodes.append(node)
    g.nodes = nodes
    return count


def reduce_to_pool(g: Graph, opset: OpSet) -> int:
    """ReduceMean/ReduceMax (rank <= 4, static shapes) -> pooling + Reshape, exact.

    The reduced axes are taken in contiguous blocks, last block first.  A block i..j
    views the tensor as (1, outer, red, inner) and pools ``red``: a Global*Pool when
    inner == 1 (or on a 4-D tensor's (H, W)), else a (red, 1) window when the op set's
    pool kernel allows it, else Transpose to (1, outer * inner, red, 1) + Global*Pool.
    Mean of block means and max of block maxima equal the full mean/max.
    """
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in g.nodes:
        op = node.op_type
        pool = {"ReduceMean": "AveragePool", "ReduceMax": "MaxPool"}.get(op)
        shape = g.static_shape(node.input[0]) if node.input else None
        out_shape = g.static_shape(node.output[0]) if node.output else None
        axes = _reduce_axes(g, node, len(shape)) if pool and shape is not None else None
        if pool is None or opset.allows(op) or not opset.allows("Global" + pool) or shape is None \
                or len(shape) > 4 or out_shape is None or axes is None:
            nodes.append(node)
            continue
        x, et, hint = node.input[0], g.elem_type(node.input[0]), node.name or op
        cur = list(shape)
        for i, j in reversed(_blocks(sorted(a for a in axes if shape[a] != 1))):
            x = _pool_block(g, opset, pool, x, cur, i, j, et, hint, nodes)
            cur[i:j + 1] = [1] * (j + 1 - i)
        nodes.append(g.make("Reshape", [x, g.ints(out_shape, "shape")], f"{hint}_shape", outputs=[node.output[0]]))
        count += 1
    g.nodes = nodes
    return count


def _blocks(axes: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted axes as (first, last)."""
    out: list[tuple[int, int]] = []
    for a in axes:
        if out and out[-1][1] == a - 1:
            out[-1] = (out[-1][0], a)
        else:
            out.append((a, a))
    return out


def _pool_block(g: Graph, opset: OpSet, pool: str, x: str, shape: list[int], i: int, j: int, et: int, hint: str,
                nodes: list[onnx.NodeProto]) -> str:
    """Pool axes i..j of a value of ``shape``; returns a value shaped like ``shape`` with
    those axes 1 (up to a final Reshape, which the caller or the next block does)."""
    outer, red, inner = math.prod(shape[:i]), math.prod(shape[i:j + 1]), math.prod(shape[j + 1:])
    gpool = "Global" + pool

    def make(op: str, inputs: list[str], out_shape: tuple[int, ...], **attrs: object) -> str:
        n = g.make(op, inputs, f"{hint}_{op.lower()}", shape=out_shape, elem_type=et, **attrs)
        nodes.append(n)
        return n.output[0]

    if len(shape) == 4 and (i, j) == (2, 3):
        return make(gpool, [x], (shape[0], shape[1], 1, 1))
    rule = opset.rule(pool)
    if inner == 1:
        img = make("Reshape", [x, g.ints([1, outer, red, 1], "img")], (1, outer, red, 1))
        return make(gpool, [img], (1, outer, 1, 1))
    img = make("Reshape", [x, g.ints([1, outer, red, inner], "img")], (1, outer, red, inner))
    if rule is not None and (rule.kernel is None or red in rule.kernel):
        return make(pool, [img], (1, outer, 1, inner), kernel_shape=[red, 1])
    tr = make("Transpose", [img], (1, outer, inner, red), perm=[0, 1, 3, 2])
    col = make("Reshape", [tr, g.ints([1, outer * inner, red, 1], "col")], (1, outer * inner, red, 1))
    return make(gpool, [col], (1, outer * inner, 1, 1))


def _reduce_axes(g: Graph, node: onnx.NodeProto, rank: int) -> set[int] | None:
    a = attrs_of(node)
    if len(node.input) > 1 and node.input[1]:
        v = g.const(node.input[1])
        if v is None:
            return None
        axes = [int(x) for x in v.reshape(-1)]
    else:
        axes = [int(x) for x in a.get("axes", [])]  # type: ignore[union-attr]
    if not axes:
        return None if a.get("noop_with_empty_axes", 0) else set(range(rank))
    return {x % rank for x in axes}


def squeeze_to_reshape(g: Graph, opset: OpSet) -> int:
    """Squeeze/Unsqueeze (static shapes) -> Reshape when the set lacks them."""
    count = 0
    nodes = []
    for node in g.nodes:
        out = g.static_shape(node.output[0]) if node.output else None
        if node.op_type in ("Squeeze", "Unsqueeze") and not opset.allows(node.op_type) and out is not None \
                and opset.allows("Reshape"):
            nodes.append(g.make("Reshape", [node.input[0], g.ints(out, "shape")], node.name,
                                outputs=[node.output[0]]))
            count += 1
        else:
            nodes.append(node)
    g.nodes = nodes
    return count


def simplify_layout(g: Graph, opset: OpSet) -> int:
    """Reshape of Reshape -> one Reshape; no-op Reshape/Transpose removed; a Transpose
    that moves only size-1 axes -> Reshape; Transpose of Transpose -> one Transpose."""
    count = 0
    changed = True
    while changed:
        changed = False
        producers = g.producers()
        consumers = g.consumers()
        outputs = g.output_names()
        for node in list(g.nodes):
            op = node.op_type
            if op not in ("Reshape", "Transpose") or node not in g.nodes:
                continue
            src_shape, out_shape = g.static_shape(node.input[0]), g.static_shape(node.output[0])
            if src_shape is None or out_shape is None:
                continue
            prev = producers.get(node.input[0])
            single = prev is not None and len(consumers.get(prev.output[0], [])) == 1 \
                and prev.output[0] not in outputs
            perm = _perm(node, len(src_shape)) if op == "Transpose" else []
            if src_shape == out_shape and perm == sorted(perm):  # a no-op Reshape or Transpose
                if bypass(g, g.nodes, node):
                    changed = True
                    break
            if op == "Reshape" and prev is not None and prev.op_type == "Reshape" and single:
                node.input[0] = prev.input[0]
                g.nodes.remove(prev)
                changed = True
                break
            if op == "Transpose":
                moved = [a for a in perm if src_shape[a] != 1]
                if moved == sorted(moved):
                    idx = g.nodes.index(node)
                    g.nodes[idx] = g.make("Reshape", [node.input[0], g.ints(out_shape, "shape")], node.name,
                                          outputs=[node.output[0]])
                    changed = True
                    break
                if prev is not None and prev.op_type == "Transpose" and single:
                    inner = _perm(prev, len(src_shape))
                    node.input[0] = prev.input[0]
                    _set_perm(node, [inner[a] for a in perm])
                    g.nodes.remove(prev)
                    changed = True
                    break
        if changed:
            count += 1
    return count


def _perm(node: onnx.NodeProto, rank: int) -> list[int]:
    p = attrs_of(node).get("perm")
    return [int(a) for a in p] if p is not None else list(range(rank))[::-1]  # type: ignore[union-attr]


def _set_perm(node: onnx.NodeProto, perm: list[int]) -> None:
    del node.attribute[:]
    node.attribute.append(onnx.helper.make_attribute("perm", perm))
