"""ONNX files from other exporters and older tools, brought to what the rest of edgevid
reads (no torch, no runtime).

API: ``modernize(proto, where, input_shape=None) -> (proto, notes)``, and
``graph_inputs(proto)`` / ``default_opset(proto)``:

* initializers listed as graph inputs (IR version 3 and the exporters of that time)
  are dropped from the inputs, so that the real input is the only one;
* value_info entries without a shape (or without a type) are dropped: ONNX shape
  inference fills them in again, and ``onnx.checker``'s full check refuses them
  ("Field 'shape' of 'type' is required but missing");
* a default-domain opset below :data:`TARGET_OPSET` is upgraded with onnx's version
  converter (what ``torch.onnx`` writes today and what the lowering passes read);
  an operator the converter cannot take is named with its node (``BadInput``);
* ``input_shape``: the shape to fix the single real input at, for a graph whose
  input has dynamic dimensions (``BadInput`` naming the dimension when it does
  not fit the input's rank or a static dimension).

A file that needs none of this comes back unchanged with no notes; the caller logs
the notes (``quant.onnx_io.load_onnx`` does).
"""
from __future__ import annotations

from typing import Sequence

import onnx
from onnx import helper

from edge.core.errors import BadInput
from quant.messages import first_line

TARGET_OPSET = 17


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs (initializers listed as inputs by old exporters left out); re-exported by
    ``quant.onnx_io``."""
    inits = {i.name for i in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in inits]


def default_opset(proto: onnx.ModelProto) -> int:
    """The model's default-domain ("" / ai.onnx) opset version (1 when none is imported)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def modernize(proto: onnx.ModelProto, where: str, input_shape: Sequence[int] | None = None
              ) -> tuple[onnx.ModelProto, list[str]]:
    """``proto`` brought up to date (see the module doc) and what was done, one note each;
    ``proto`` itself is not changed."""
    inits = {i.name for i in proto.graph.initializer}
    listed = [v.name for v in proto.graph.input if v.name in inits]
    shapeless = [v.name for v in proto.graph.value_info
                 if not (v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"))]
    version = default_opset(proto)
    if not (listed or shapeless or input_shape is not None or version < TARGET_OPSET):
        return proto, []
    notes: list[str] = []
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    if listed:
        keep = [v for v in graph.input if v.name not in inits]
        del graph.input[:]
        graph.input.extend(keep)
        notes.append(f"{len(listed)} initializer(s) listed as graph inputs (IR version {out.ir_version}) "
                     "left out of the inputs")
        out.ir_version = max(out.ir_version, 4)
    if shapeless:
        keep_vi = [v for v in graph.value_info if v.name not in set(shapeless)]
        del graph.value_info[:]
        graph.value_info.extend(keep_vi)
        notes.append(f"{len(shapeless)} value_info entr{'y' if len(shapeless) == 1 else 'ies'} without a shape "
                     f"dropped (shape inference fills them): {', '.join(shapeless[:5])}"
                     + (" ..." if len(shapeless) > 5 else ""))
    if input_shape is not None:
        _fix_input(out, tuple(int(d) for d in input_shape), where, notes)
    if version < TARGET_OPSET:
        out = _upgrade(out, version, where)
        notes.append(f"opset {version} upgraded to {TARGET_OPSET} by onnx's version converter")
    return out, notes


def _fix_input(proto: onnx.ModelProto, shape: tuple[int, ...], where: str, notes: list[str]) -> None:
    inputs = graph_inputs(proto)
    if len(inputs) != 1:
        raise BadInput(f"{where}: --input-shape fixes a single input; the graph has {len(inputs)}: "
                       f"{', '.join(v.name for v in inputs)}")
    value = inputs[0]
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise BadInput(f"{where}: input {value.name!r} has rank {len(dims)}, --input-shape gives {len(shape)} "
                       f"dimensions ({'x'.join(map(str, shape))})")
    fixed = []
    for i, (d, want) in enumerate(zip(dims, shape)):
        if want <= 0:
            raise BadInput(f"{where}: --input-shape dimension {i} must be positive, got {want}")
        if d.HasField("dim_value") and d.dim_value > 0:
            if d.dim_value != want:
                raise BadInput(f"{where}: input {value.name!r} dimension {i} is {d.dim_value}, --input-shape "
                               f"gives {want}")
            continue
        fixed.append(f"{i} ({d.dim_param or '?'}) = {want}")
        d.Clear()
        d.dim_value = want
    if fixed:
        notes.append(f"input {value.name!r}: dynamic dimension(s) fixed by --input-shape: {', '.join(fixed)}")


def _upgrade(proto: onnx.ModelProto, version: int, where: str) -> onnx.ModelProto:
    """The version converter's result at :data:`TARGET_OPSET`; ``BadInput`` naming the node it could not take."""
    from onnx import version_converter

    unknown = [n for n in proto.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)]
    if unknown:
        n = unknown[0]
        raise BadInput(f"{where}: node {n.name or n.output[0]!r} ({n.op_type}) is no ONNX operator (removed "
                       f"from the standard or never in it): opset {version} cannot be upgraded to {TARGET_OPSET}")
    try:
        out = version_converter.convert_version(proto, TARGET_OPSET)
    except Exception as e:  # noqa: BLE001 - ConvertError, RuntimeError from the C++ adapters
        text = str(e)
        named = next((n for n in proto.graph.node if n.op_type and n.op_type in text), None)
        which = f" at node {named.name or named.output[0]!r} ({named.op_type})" if named else ""
        raise BadInput(f"{where}: onnx's version converter could not upgrade opset {version} to "
                       f"{TARGET_OPSET}{which}: {first_line(e)}") from None
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(list(out.opset_import)))
    return out
