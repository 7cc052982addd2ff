"""Operator-set checking, TVM-BYOC style: every rejected node comes with a reason.

``check(model, opset)`` returns one line per rejected node (its name, op type
and every rule it breaks) plus one line per graph input/output with a dynamic
shape; an empty list means the model is inside the set.  The rules are data
(:mod:`targets.opset`); this module only reads them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from quant.onnx_io import initializers
from quant.onnx_io import attrs_of
from targets.lowering.graph import ValueInfo, infer, value_infos
from targets.opset import OpRule, OpSet

_DTYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 16: "bfloat16", 4: "uint16", 5: "int16"}


class _Context:
    """Shapes and constants of one model, for the rules."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.info: dict[str, ValueInfo] = value_infos(infer(model))
        self.consts: dict[str, np.ndarray] = initializers(model)
        for n in g.node:
            if n.op_type == "Constant" and n.output:
                a = attrs_of(n)
                v = next((a[k] for k in ("value", "value_float", "value_floats", "value_int", "value_ints")
                          if k in a), None)
                if v is not None:
                    self.consts[n.output[0]] = np.asarray(v)
        # DequantizeLinear of constants (quantized weights) counts as constant
        self.const_like = set(self.consts)
        for n in g.node:
            if n.op_type == "DequantizeLinear" and all(i in self.const_like for i in n.input if i):
                self.const_like.update(n.output)
        self.graph_io = ({i.name for i in g.input} | {o.name for o in g.output}) - set(self.consts)

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        vi = self.info.get(name)
        return vi.shape if vi else None

    def static(self, name: str) -> bool:
        vi = self.info.get(name)
        return vi is not None and vi.static


def _fmt(shape: Sequence[object] | None) -> str:
    return "unknown" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _x(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def _range_reasons(what: str, values: Sequence[int], allowed: object | None) -> list[str]:
    if allowed is None or all(v in allowed for v in values):  # type: ignore[operator]
        return []
    return [f"{what} {_x(values)} outside {allowed}"]


def _spatial_reasons(node: onnx.NodeProto, rule: OpRule, ctx: _Context, opset: OpSet) -> list[str]:
    a = attrs_of(node)
    w_shape = ctx.shape(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
    kernel = [int(k) for k in a.get("kernel_shape", w_shape[2:] if w_shape else [])]  # type: ignore[union-attr,index]
    if not kernel:
        return ["kernel shape unknown"]
    n = len(kernel)
    if rule.spatial_dims and n not in rule.spatial_dims:
        dims = "/".join(f"{d}-D" for d in rule.spatial_dims)
        return [f"{n}-D {node.op_type.lower()} (kernel {_x(kernel)}); the {opset.name} set takes {dims} only"]
    strides = [int(s) for s in a.get("strides", [1] * n)]  # type: ignore[union-attr]
    dil = [int(d) for d in a.get("dilations", [1] * n)]  # type: ignore[union-attr]
    pads = [int(p) for p in a.get("pads", [0] * 2 * n)]  # type: ignore[union-attr]
    kernel_range, stride_range = rule.kernel, rule.stride
    reasons: list[str] = []
    if node.op_type == "Conv":
        x_shape = ctx.shape(node.input[0])
        cin = x_shape[1] if x_shape and len(x_shape) > 1 else None
        cout = w_shape[0] if w_shape else None
        group = int(a.get("group", 1))  # type: ignore[arg-type]
        kind = "dense" if group == 1 else "depthwise" if (group == cin and cout == cin) else "grouped"
        if rule.groups and kind not in rule.groups:
            reasons.append(f"{kind} convolution (groups={group}, {cin} -> {cout} channels); allowed: "
                           + ", ".join(sorted(rule.groups)))
        if kind == "depthwise":
            kernel_range = rule.depthwise_kernel or kernel_range
            stride_range = rule.depthwise_stride or stride_range
        if rule.dilation_x_channels and isinstance(cin, int) and max(dil) * cin > rule.dilation_x_channels:
            reasons.append(f"dilation {max(dil)} x {cin} input channels > {rule.dilation_x_channels}")
        if rule.kernel_words and kind == "dense" and isinstance(cin, int):
            words = math.prod(kernel) * math.ceil(cin / group / opset.channel_parallel)
            if words > rule.kernel_words:
                reasons.append(f"kernel {_x(kernel)} x ceil({cin}/{opset.channel_parallel}) = {words} weight words "
                               f"> {rule.kernel_words}")
    reasons += _range_reasons("kernel", kernel, kernel_range)
    reasons += _range_reasons("stride", strides, stride_range)
    reasons += _range_reasons("dilation", dil, rule.dilation)
    if rule.pads_within_kernel and str(a.get("auto_pad", "NOTSET")) in ("NOTSET", ""):
        limit = [(k - 1) * d for k, d in zip(kernel, dil)] * 2
        if any(p > m for p, m in zip(pads, limit)):
            reasons.append(f"pads {pads} exceed (kernel - 1) * dilation {limit}")
    return reasons


def _quant_reasons(node: onnx.NodeProto, rule: OpRule, ctx: _Context) -> list[str]:
    reasons: list[str] = []
    scale = ctx.consts.get(node.input[1]) if len(node.input) > 1 else None
    zp = ctx.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is not None:
        if rule.per_tensor and scale.size != 1:
            reasons.append(f"per-channel scale ({scale.size} values); per-tensor only")
        if rule.pow2_scale:
            logs = np.log2(np.abs(scale.astype(np.float64)).reshape(-1))
            if not np.all(np.isfinite(logs)) or not np.allclose(logs, np.round(logs), atol=0, rtol=0):
                reasons.append(f"scale {float(scale.reshape(-1)[0]):.6g} is not a power of two")
    if rule.quant_dtypes:
        if zp is not None:
            et = onnx.helper.np_dtype_to_tensor_dtype(zp.dtype)
        else:  # no zero point: QuantizeLinear outputs uint8 (spec default); DQ reads its input's type
            v = node.input[0] if node.op_type == "DequantizeLinear" else node.output[0]
            vi = ctx.info.get(v)
            et = vi.elem_type if vi else onnx.TensorProto.UINT8
        if et not in rule.quant_dtypes:
            names = ", ".join(_DTYPE_NAMES.get(t, str(t)) for t in sorted(rule.quant_dtypes))
            reasons.append(f"{_DTYPE_NAMES.get(et, et)} quantization; allowed: {names}")
    if rule.zero_point_zero and zp is not None and np.any(zp != 0):
        reasons.append("non-zero zero point (asymmetric); symmetric only")
    return reasons


def node_reasons(node: onnx.NodeProto, ctx: _Context, opset: OpSet) -> list[str]:
    """Every rule of ``opset`` that ``node`` breaks (empty when it is legal)."""
    if node.domain not in ("", "ai.onnx"):
        return [f"custom domain {node.domain!r} is not in the {opset.name} operator set"]
    rule = opset.rule(node.op_type)
    if rule is None:
        hint = opset.hint(node.op_type)
        return [f"{node.op_type} is not in the {opset.name} operator set" + (f" ({hint})" if hint else "")]
    reasons: list[str] = []
    ins = [i for i in node.input if i]
    outs = [o for o in node.output if o]
    if node.op_type in ("Conv", "MaxPool", "AveragePool") and (rule.spatial_dims or rule.kernel):
        reasons += _spatial_reasons(node, rule, ctx, opset)
    dynamic, high = [], []
    for v in ins + outs:
        if v in ctx.consts:
            continue
        shape = ctx.shape(v)
        if opset.static_shapes and not ctx.static(v):
            dynamic.append(f"'{v}' {_fmt(shape)}")
        elif shape is not None and len(shape) > opset.max_rank:
            if not (rule.graph_io_any_rank and v in ctx.graph_io):
                high.append(f"'{v}' {_fmt(shape)}")
    if dynamic:
        reasons.append("dynamic or unknown shape: " + ", ".join(dynamic))
    if high:
        reasons.append(f"tensors above rank {opset.max_rank}: " + ", ".join(high))
    for k in rule.const_inputs:
        if k < len(node.input) and node.input[k] and node.input[k] not in ctx.const_like:
            reasons.append(f"input {k} ('{node.input[k]}') must be a constant")
    if rule.input_ranks is not None and ins:
        s = ctx.shape(node.input[0])
        if s is not None and len(s) not in rule.input_ranks:
            reasons.append(f"input rank {len(s)}; allowed: {', '.join(map(str, sorted(rule.input_ranks)))}")
    if rule.single_output and len(outs) > 1:
        reasons.append("only its first output may be used")
    if rule.pad_modes:
        mode = str(attrs_of(node).get("mode", "constant"))
        if mode not in rule.pad_modes:
            reasons.append(f"mode {mode!r}; allowed: {', '.join(sorted(rule.pad_modes))}")
    if rule.zero_pad_value and len(node.input) > 2 and node.input[2]:
        v = ctx.consts.get(node.input[2])
        if v is not None and np.any(v != 0):
            reasons.append(f"pad value {float(v.reshape(-1)[0]):g}; zero padding only")
    if rule.quant_dtypes or rule.pow2_scale or rule.per_tensor:
        reasons += _quant_reasons(node, rule, ctx)
    return reasons


def check(model: onnx.ModelProto | str | Path, opset: OpSet) -> list[str]:
    """One reason per rejected node (``node 'NAME' (OP): rule; rule``) and per graph
    input/output with a dynamic shape; empty when ``model`` is inside ``opset``."""
    if not isinstance(model, onnx.ModelProto):
        from quant.onnx_io import load_onnx

        model = load_onnx(model)
    ctx = _Context(model)
    reasons: list[str] = []
    if opset.static_shapes:
        for v in [*model.graph.input, *model.graph.output]:
            if v.name in ctx.consts:
                continue
            if not ctx.static(v.name):
                reasons.append(f"graph {'input' if v in model.graph.input else 'output'} '{v.name}': dynamic or "
                               f"unknown shape {_fmt(ctx.shape(v.name))}; the {opset.name} set needs static shapes")
    for i, node in enumerate(model.graph.node):
        if node.op_type == "Constant" and node.output and node.output[0] in ctx.consts:
            continue
        r = node_reasons(node, ctx, opset)
        if r:
            reasons.append(f"node '{node.name or f'#{i}'}' ({node.op_type}): " + "; ".join(r))
    return reasons
