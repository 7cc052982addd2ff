"""A small mutable view of an ONNX graph for the lowering passes.

``Graph`` holds the node list, the constants (initializers and ``Constant``
nodes, as numpy arrays), the static shapes and element types from ONNX shape
inference, and a name generator.  Passes read it, build a new node list with
:meth:`Graph.node`, and :meth:`Graph.to_model` writes a checked ``ModelProto``
(dead nodes and unused constants dropped, nodes topologically sorted, shapes
re-inferred).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.core.errors import BadInput
from quant.onnx_io import initializers

log = logging.getLogger(__name__)

Shape = tuple[int, ...]


def opset_version(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@dataclass(frozen=True)
class ValueInfo:
    """Static shape (None where unknown) and ONNX element type of a value."""

    shape: tuple[int | None, ...] | None
    elem_type: int

    @property
    def static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) and d > 0 for d in self.shape)


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation; malformed models raise BadInput."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several error types
        raise BadInput(f"ONNX shape inference failed: {str(e).splitlines()[0]}") from None


def value_infos(model: onnx.ModelProto) -> dict[str, ValueInfo]:
    """Shapes/types of every value the (already inferred) model describes."""
    out: dict[str, ValueInfo] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        shape = None
        if t.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        if shape is not None or vi.name not in out:
            out[vi.name] = ValueInfo(shape, t.elem_type)
    for init in g.initializer:
        out[init.name] = ValueInfo(tuple(init.dims), init.data_type)
    return out


class Graph:
    """Working copy of a model's main graph for rewriting passes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.opset = opset_version(model)
        g = model.graph
        self.consts: dict[str, np.ndarray] = initializers(model)
        nodes = []
        for n in g.node:  # Constant nodes become constants
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
                value = _constant_value(n)
                if value is not None:
                    self.consts[n.output[0]] = value
                    continue
            nodes.append(n)
        self.nodes: list[onnx.NodeProto] = nodes
        self.inputs = [i for i in g.input if i.name not in self.consts]
        self.outputs = list(g.output)
        self.info: dict[str, ValueInfo] = value_infos(infer(model))
        for name, arr in self.consts.items():
            self.info[name] = ValueInfo(tuple(arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
        self._used: set[str] = set(self.consts) | {i.name for i in g.input} | {o.name for o in g.output}
        for n in nodes:
            self._used.update(n.input)
            self._used.update(n.output)
            self._used.add(n.name)

    # ------------------------------------------------------------------ queries

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        vi = self.info.get(name)
        return vi.shape if vi else None

    def static_shape(self, name: str) -> Shape | None:
        vi = self.info.get(name)
        return tuple(int(d) for d in vi.shape) if vi is not None and vi.static else None  # type: ignore[arg-type]

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)

    def elem_type(self, name: str) -> int:
        vi = self.info.get(name)
        return vi.elem_type if vi else onnx.TensorProto.FLOAT

    def np_dtype(self, name: str) -> np.dtype:
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type(name)))

    def producers(self) -> dict[str, onnx.NodeProto]:
        return {o: n for n in self.nodes for o in n.output if o}

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        out: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def output_names(self) -> set[str]:
        return {o.name for o in self.outputs}

    # ------------------------------------------------------------------ building

    def fresh(self, hint: str) -> str:
        """A value/node name not used anywhere in the graph."""
        base = hint.replace(" ", "_") or "v"
        name, i = base, 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def add_const(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        value = np.asarray(value)
        self.consts[name] = value
        self.info[name] = ValueInfo(tuple(value.shape), helper.np_dtype_to_tensor_dtype(value.dtype))
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        return self.add_const(np.asarray(list(values), dtype=np.int64), hint)

    def make(self, op: str, inputs: Sequence[str], hint: str, *, shape: Shape | None = None,
             elem_type: int | None = None, outputs: Sequence[str] | None = None, n_out: int = 1,
             **attrs: object) -> onnx.NodeProto:
        """A new node (not yet placed) with fresh output names unless ``outputs`` given.

        ``shape``/``elem_type`` record the (single) output's static shape for later passes.
        """
        outs = list(outputs) if outputs is not None else [self.fresh(f"{hint}_out" if n_out == 1 else
                                                                     f"{hint}_out{k}") for k in range(n_out)]
        for o in outs:
            self._used.add(o)
        node = helper.make_node(op, list(inputs), outs, name=self.fresh(hint),
                                **{k: v for k, v in attrs.items() if v is not None})
        if shape is not None:
            et = elem_type if elem_type is not None else onnx.TensorProto.FLOAT
            self.info[outs[0]] = ValueInfo(tuple(int(d) for d in shape), et)
        return node

    # ------------------------------------------------------------------ output

    def to_model(self, nodes: Iterable[onnx.NodeProto] | None = None, doc: str | None = None) -> onnx.ModelProto:
        """The model with ``nodes`` (default: ``self.nodes``): dead code removed, nodes
        sorted topologically, unused constants dropped, value_info re-inferred."""
        nodes = list(self.nodes if nodes is None else nodes)
        nodes = _toposort(_live(nodes, {o.name for o in self.outputs}), {i.name for i in self.inputs},
                          set(self.consts))
        used = {i for n in nodes for i in n.input} | {o.name for o in self.outputs}
        inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in self.consts.items() if k in used]
        # output shapes are inferred again: ONNX's inference and the runtimes disagree on
        # some ceil_mode pooling lengths, and the rewrite follows the runtime
        outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in self.outputs]
        graph = helper.make_graph(nodes, self.model.graph.name or "main", list(self.inputs), outputs,
                                  initializer=inits)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                  ir_version=self.model.ir_version, producer_name=self.model.producer_name,
                                  producer_version=self.model.producer_version)
        model.doc_string = doc if doc is not None else self.model.doc_string
        for p in self.model.metadata_props:
            model.metadata_props.add(key=p.key, value=p.value)
        model.functions.extend(self.model.functions)  # model-local functions called by kept nodes
        model = infer(model)
        return model


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    a = {x.name: x for x in node.attribute}
    if "value" in a:
        return numpy_helper.to_array(a["value"].t)
    if "value_float" in a:
        return np.asarray(a["value_float"].f, dtype=np.float32)
    if "value_floats" in a:
        return np.asarray(list(a["value_floats"].floats), dtype=np.float32)
    if "value_int" in a:
        return np.asarray(a["value_int"].i, dtype=np.int64)
    if "value_ints" in a:
        return np.asarray(list(a["value_ints"].ints), dtype=np.int64)
    return None


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Nodes that (transitively) feed a graph output."""
    needed = set(outputs)
    keep: list[onnx.NodeProto] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output if o):
            keep.append(n)
            needed.update(i for i in n.input if i)
    return keep[::-1]


def _toposort(nodes: list[onnx.NodeProto], inputs: set[str], consts: set[str]) -> list[onnx.NodeProto]:
    ready = set(inputs) | set(consts) | {""}
    pending = list(nodes)
    out: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i not in ready})[:3]
            raise BadInput(f"graph is not a DAG or reads undefined values: {', '.join(missing)}")
        pending = rest
    return out
