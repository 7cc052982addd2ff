"""Generic ONNX readers (no torch, no runtime): load and validate a file, list
the real graph inputs, read the single input / output as ``TensorSpec``.

API: ``load_onnx(path, input_shape=None) -> onnx.ModelProto`` (``onnx.load`` +
``onnx.checker``, any failure one ``BadInput`` naming the file; old files brought up
to date by ``quant.onnx_upgrade``), ``graph_inputs(proto) ->
[ValueInfoProto]`` (initializers left out), ``io_specs(proto, where) ->
(TensorSpec in, TensorSpec out)`` (static shapes, e.g. (1, 3, T, H, W) -> (1, classes)),
``initializers(proto) -> {name: np.ndarray}`` (the graph's constant tables), ``attrs_of(node) ->
{name: value}`` (attributes as Python values, tensors as numpy arrays).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.core.errors import BadInput
from quant.messages import first_line
from quant.onnx_upgrade import graph_inputs, modernize
from quant.spec import TensorSpec

log = logging.getLogger(__name__)

# ONNX element type -> numpy dtype name for the specs (float32 is what every runner takes).
_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
           onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT32: "int32",
           onnx.TensorProto.INT64: "int64", onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.BOOL: "bool"}


def load_onnx(path: str | Path, input_shape: Sequence[int] | None = None) -> onnx.ModelProto:
    """``onnx.load`` + ``onnx.checker`` with every failure as one ``BadInput`` line naming the
    file, then :func:`quant.onnx_upgrade.modernize` (old opsets, IR 3 inputs, value_info
    without shapes; ``input_shape`` fixes a dynamic input), its notes logged."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, others raise OSError/ValueError
        raise BadInput(f"{path}: not a readable ONNX model, truncated or corrupt ({first_line(e)})") from None
    if not proto.graph.node:
        raise BadInput(f"{path}: not a readable ONNX model (empty graph; truncated or not ONNX)")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - onnx.checker.ValidationError and friends
        raise BadInput(f"{path}: invalid ONNX model ({first_line(e)})") from None
    proto, notes = modernize(proto, str(path), input_shape)
    for note in notes:
        log.info("%s: %s", path, note)
    return proto


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    t = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return TensorSpec(value.name, dims, _DTYPES.get(t.elem_type, onnx.TensorProto.DataType.Name(t.elem_type)))


def initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer of the main graph as a numpy array, by name."""
    return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def io_specs(proto: onnx.ModelProto, where: str | Path) -> tuple[TensorSpec, TensorSpec]:
    """The single input and single output of the model, with static shapes.

    Dynamic dimensions (``dim_param`` or 0) come back as -1 and are refused here:
    every artifact is compiled for one clip shape.
    """
    inputs, outputs = graph_inputs(proto), list(proto.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise BadInput(f"{where}: expected one input and one output, got {len(inputs)} input(s) "
                       f"({', '.join(v.name for v in inputs)}) and {len(outputs)} output(s)")
    spec_in, spec_out = _spec(inputs[0]), _spec(outputs[0])
    for spec in (spec_in, spec_out):
        if any(d <= 0 for d in spec.shape):
            raise BadInput(f"{where}: {spec.name!r} has a dynamic shape {spec.shape}; export with static shapes")
    return spec_in, spec_out


def attrs_of(node: onnx.NodeProto) -> dict[str, object]:
    """The node's attributes as Python values (tensors as numpy arrays)."""
    out: dict[str, object] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out
