"""Batched ONNX operators in PyTorch: what :class:`quant.qat.GraphNet` runs node by node.

    Node(op, name, ins, outs, attrs): one ONNX node, attributes decoded (node_attrs)
    run_node(node, args, batched) -> torch.Tensor: the node on tensors with a leading batch axis B
        added to every activation (constants, named outside ``batched``, have none)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from edge.core.errors import BadInput


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


@dataclass
class Node:
    op: str
    name: str
    ins: list[str]
    outs: list[str]
    attrs: dict[str, Any]


def _np(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _sym_pads(pads: Sequence[int], nd: int) -> tuple[list[int], list[int] | None]:
    """ONNX pads [b1.., e1..] -> symmetric torch padding, or (zeros, F.pad list) when asymmetric."""
    b, e = list(pads[:nd]), list(pads[nd:])
    if b == e:
        return b, None
    fp: list[int] = []
    for d in reversed(range(nd)):
        fp += [b[d], e[d]]
    return [0] * nd, fp


def _flat2(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def run_node(n: Node, args: list[Any], batched: set[str]) -> torch.Tensor:
    """One ONNX node on batched tensors (leading axis B added to every activation)."""
    op, a = n.op, n.attrs
    x = args[0]
    if op == "Conv":
        w = args[1]
        nd = w.dim() - 2
        if str(a.get("auto_pad", "NOTSET")) not in ("NOTSET", ""):
            raise BadInput(f"QAT: {n.name}: auto_pad is not supported")
        pad, fp = _sym_pads(a.get("pads", [0] * 2 * nd), nd)
        xb = _flat2(x)
        if fp is not None:
            xb = F.pad(xb, fp)
        conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        y = conv(xb, w, args[2] if len(args) > 2 else None, stride=a.get("strides", [1] * nd), padding=pad,
                 dilation=a.get("dilations", [1] * nd), groups=int(a.get("group", 1)))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])
    if op == "Gemm":
        w = args[1]
        if int(a.get("transA", 0)):
            raise BadInput(f"QAT: {n.name}: Gemm with transA is not supported")
        w = w.t() if int(a.get("transB", 0)) else w
        y = float(a.get("alpha", 1.0)) * (x @ w)
        if len(args) > 2 and args[2] is not None:
            y = y + float(a.get("beta", 1.0)) * args[2]
        return y
    if op == "MatMul":
        return x @ args[1]
    if op in ("Add", "Sub", "Mul", "Div"):
        b = args[1]
        return {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x, b)
    if op == "Relu":
        return F.relu(x)
    if op == "Clip":
        lo = float(_np(args[1]).reshape(-1)[0]) if len(args) > 1 and args[1] is not None else a.get("min")
        hi = float(_np(args[2]).reshape(-1)[0]) if len(args) > 2 and args[2] is not None else a.get("max")
        return torch.clamp(x, lo, hi)
    if op == "Sigmoid":
        return torch.sigmoid(x)
    if op == "HardSigmoid":
        return torch.clamp(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0.0, 1.0)
    if op == "HardSwish":
        return F.hardswish(x)
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        dims = tuple(range(3, x.dim()))
        return x.mean(dim=dims, keepdim=True) if op == "GlobalAveragePool" else x.amax(dim=dims, keepdim=True)
    if op in ("AveragePool", "MaxPool"):
        k = list(a["kernel_shape"])
        nd = len(k)
        if int(a.get("ceil_mode", 0)) or any(d != 1 for d in a.get("dilations", [1] * nd)):
            raise BadInput(f"QAT: {n.name}: ceil_mode / dilated pooling is not supported")
        pad, fp = _sym_pads(a.get("pads", [0] * 2 * nd), nd)
        xb = _flat2(x)
        if op == "MaxPool":
            if fp is not None:
                xb = F.pad(xb, fp, value=-math.inf)
            y = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1](xb, k, a.get("strides", [1] * nd), pad)
        else:
            cip = bool(int(a.get("count_include_pad", 0)))
            if fp is not None:
                if not cip and any(fp):
                    raise BadInput(f"QAT: {n.name}: asymmetric AveragePool padding is not supported")
                xb = F.pad(xb, fp)
            y = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1](xb, k, a.get("strides", [1] * nd), pad,
                                                                 count_include_pad=cip) if nd > 1 else \
                F.avg_pool1d(xb, k, a.get("strides", [1]), pad, count_include_pad=cip)
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])
    if op == "Concat":  # constants (e.g. TSM's zero frames) repeated over the batch
        b = next(v for i, v in zip(n.ins, args) if i in batched)
        parts = [v if i in batched else v.unsqueeze(0).expand(b.shape[0], *v.shape) for i, v in zip(n.ins, args)]
        return torch.cat(parts, dim=int(a["axis"]) % (b.dim() - 1) + 1)
    if op == "Reshape":
        shape = [int(s) for s in _np(args[1]).reshape(-1)]
        if not int(a.get("allowzero", 0)):
            shape = [x.shape[k + 1] if s == 0 else s for k, s in enumerate(shape)]
        return x.reshape(x.shape[0], *shape)
    if op == "Flatten":
        ax = int(a.get("axis", 1)) % max(x.dim() - 1, 1)
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:ax + 1])), -1)
    if op == "Transpose":
        perm = a.get("perm", list(range(x.dim() - 1))[::-1])
        return x.permute(0, *[p + 1 for p in perm])
    if op == "Slice":
        starts, ends = (_np(v).reshape(-1) for v in args[1:3])
        axes = _np(args[3]).reshape(-1) if len(args) > 3 and args[3] is not None else range(len(starts))
        steps = _np(args[4]).reshape(-1) if len(args) > 4 and args[4] is not None else [1] * len(starts)
        sl: list[slice] = [slice(None)] * x.dim()
        rank = x.dim() - 1
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if int(st) < 1:
                raise BadInput(f"QAT: {n.name}: Slice with step {int(st)} is not supported")
            ax = int(ax) % rank
            dim = x.shape[ax + 1]
            s, e = int(s), int(e)
            s = min(max(s + dim if s < 0 else s, 0), dim)
            e = min(max(e + dim if e < 0 else e, 0), dim)
            sl[ax + 1] = slice(s, e, int(st))
        return x[tuple(sl)]
    if op == "Pad":
        pads = [int(p) for p in _np(args[1]).reshape(-1)]
        value = 0.0 if len(args) < 3 or args[2] is None else float(_np(args[2]).reshape(-1)[0])
        if str(a.get("mode", "constant")) != "constant":
            raise BadInput(f"QAT: {n.name}: only constant Pad is supported")
        rank = x.dim() - 1
        axes = [int(v) % rank for v in _np(args[3]).reshape(-1)] if len(args) > 3 and args[3] is not None \
            else list(range(rank))
        k = len(pads) // 2
        width = {ax: (pads[j], pads[j + k]) for j, ax in enumerate(axes)}
        fp: list[int] = []
        for d in reversed(range(rank)):
            fp += list(width.get(d, (0, 0)))
        return F.pad(x, fp, value=value)
    if op in ("Identity", "Dropout"):
        return x
    if op == "BatchNormalization":
        scale, bias, mean, var = args[1:5]
        shp = (1, 1, -1) + (1,) * (x.dim() - 3)
        inv = (var + float(a.get("epsilon", 1e-5))).rsqrt() * scale
        return (x - mean.reshape(shp)) * inv.reshape(shp) + bias.reshape(shp)
    if op in ("ReduceMean", "ReduceMax"):
        axes = a.get("axes")
        if axes is None and len(args) > 1 and args[1] is not None:
            axes = [int(v) for v in _np(args[1]).reshape(-1)]
        rank = x.dim() - 1
        dims = tuple(int(d) % rank + 1 for d in (axes if axes is not None else range(rank)))
        keep = bool(int(a.get("keepdims", 1)))
        return x.mean(dim=dims, keepdim=keep) if op == "ReduceMean" else x.amax(dim=dims, keepdim=keep)
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes")
        if axes is None and len(args) > 1 and args[1] is not None:
            axes = [int(v) for v in _np(args[1]).reshape(-1)]
        if op == "Squeeze":
            rank = x.dim() - 1
            drop = {int(d) % rank for d in (axes if axes is not None else
                                            [d for d in range(rank) if x.shape[d + 1] == 1])}
            return x.reshape(x.shape[0], *[s for d, s in enumerate(x.shape[1:]) if d not in drop])
        rank = x.dim() - 1 + len(axes)
        shape = list(x.shape[1:])
        for d in sorted(int(v) % rank for v in axes):
            shape.insert(d, 1)
        return x.reshape(x.shape[0], *shape)
    raise BadInput(f"QAT: {n.name}: operator {op} is not supported by quant.qat")


__all__ = ["Node", "node_attrs", "run_node"]
