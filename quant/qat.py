"""Quantization-aware fine-tuning (QAT) with each target's own int8 scheme.

The network is trained *as the deployed graph*: the fp32 ONNX model the target
quantizes (fpga: the lowered model - BN folded, Conv3d split into temporal taps
of Conv2d, hard activations - after :func:`quant.pow2.fold_constants`; onnxruntime
/ openvino: the exported model with BN folded) is run in PyTorch by
:class:`GraphNet`, a small batched interpreter whose Conv/Gemm/MatMul weights and
biases are the trainable parameters, with fake quantization at the points the
target's quantizer will put its Quantize/DequantizeLinear pairs.  BN is folded
before QAT, so the weights that are fake-quantized are the ones the integer
model holds.  After training, :meth:`GraphNet.to_onnx` writes the weights back
into the fp32 ONNX model and the normal compile path quantizes it
(``targets.fpga`` / ``targets.onnxruntime`` ...).

Schemes (:data:`SCHEMES`; :data:`TARGET_SCHEME` maps targets to them):

* ``"pow2"`` (fpga): what :func:`quant.pow2.quantize` applies, with its own code:
  quantization points :func:`quant.pow2.quant_points` (outputs of compute ops,
  past a fused Relu/Clip; the network input; not the logits, which stay int32);
  weights symmetric per-tensor int8 at scale ``2^-f`` with ``f`` from
  :func:`quant.pow2.frac_for_tensor` (recomputed every step from the current
  weights); activations symmetric per-tensor int8 at ``2^-f`` with ``f`` from
  :func:`quant.pow2.calibrate` on the calibration clips (recomputed after every
  epoch and once at the end); biases rounded to int32 at ``f_in + f_w``; the
  constant operands of Add/Mul (hard-sigmoid's 3 and 1/6) as int8 at their own
  power-of-two scale.  Since export runs the same functions on the same weights
  and clips, the exported QDQ model has exactly the scales the QAT model was
  last evaluated with.  Activations round as the device does (``rounding=
  "half_up"``, :mod:`quant.intsim`'s DPU rule: the fake-quant module then equals
  the simulator's logits to float rounding) or as ONNX QuantizeLinear does
  (``"half_even"``: equals the QDQ model on ONNX Runtime); weights, biases and
  the network input are rounded on the host, half to even, either way.
* ``"int8"`` (onnxruntime, openvino): weights symmetric per-output-channel int8
  (``max|w_c| / 127``, range [-127, 127]), activations per-tensor affine int8
  from min/max over the calibration clips, at the network input and the outputs
  of compute ops (Conv, Gemm, MatMul, Add, Mul, pools, Concat, Sigmoid): close to,
  not identical with, where ORT's and NNCF's quantizers put them; the export is
  the ordinary PTQ of the fine-tuned fp32 model by the target's own tool.

Fake quantization is torch's ``fake_quantize_per_tensor_affine`` /
``fake_quantize_per_channel_affine`` (straight-through estimator, zero gradient
outside the int8 range); scales are not learned (power-of-two by construction,
from calibration).

Training (:func:`finetune`): cross entropy on labelled clips decoded once by
:func:`edge.train.build_cache`, AdamW, cosine schedule, a checkpoint (weights,
scales, optimizer, history) after every epoch that ``resume`` continues from.
"""
from __future__ import annotations

import logging
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

SCHEMES = ("pow2", "int8")
# pow2 activation rounding: "half_up" = the device (quant.intsim's default, the DPU's rule), "half_even" = ONNX
# QuantizeLinear (the QDQ model on ONNX Runtime); weights, biases and the input are rounded on the host (half even)
ROUNDINGS = ("half_up", "half_even")
TARGET_SCHEME = {"fpga": "pow2", "onnxruntime": "int8", "openvino": "int8"}
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
INT8_POINT_OPS = frozenset({"Conv", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "GlobalAveragePool", "Concat",
                            "Sigmoid"})
_ACTS = frozenset({"Relu", "Clip"})
_INT32 = 2 ** 31 - 1


# ----------------------------------------------------------------------------- source models
def qat_graph(model: onnx.ModelProto, scheme: str) -> onnx.ModelProto:
    """The fp32 graph QAT trains for ``scheme``: pow2 expects the *lowered* fpga
    model (``targets.lowering.lower``) and returns it constant-folded as
    :func:`quant.pow2.quantize` sees it; int8 folds BatchNormalization into the
    convolutions (the quantizers do the same before quantizing)."""
    from quant.pow2 import fold_constants

    if scheme not in SCHEMES:
        raise BadInput(f"QAT scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if scheme == "int8":
        from targets.lowering.batchnorm import fold_batchnorm
        from targets.lowering.graph import Graph

        g = Graph(onnx.ModelProto.FromString(model.SerializeToString()))
        fold_batchnorm(g, None)  # type: ignore[arg-type]
        model = g.to_model() if hasattr(g, "to_model") else g.model
    return fold_constants(model)


def int8_points(model: onnx.ModelProto) -> list[str]:
    """Activation quantization points of the ``int8`` scheme: the network input and
    the outputs of :data:`INT8_POINT_OPS` (past a lone following Relu/Clip), not
    the graph outputs."""
    g = model.graph
    consts = {i.name for i in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    points = [i.name for i in g.input if i.name not in consts]
    for n in g.node:
        if n.op_type not in INT8_POINT_OPS:
            continue
        t = n.output[0]
        while t not in outputs and len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in _ACTS:
            t = consumers[t][0].output[0]
        if t not in outputs:
            points.append(t)
    return points


# ----------------------------------------------------------------------------- the graph as a module
def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def _pname(name: str) -> str:
    """A ParameterDict key for an ONNX initializer name (stable across processes)."""
    return "p" + "".join(c if c.isalnum() else "_" for c in name) + f"_{zlib.crc32(name.encode()):08x}"


@dataclass
class _Node:
    op: str
    name: str
    ins: list[str]
    outs: list[str]
    attrs: dict[str, Any]


class GraphNet(nn.Module):
    """An fp32 ONNX graph (static shapes, one input of shape (1, ...)) run by PyTorch,
    batched: ``net(x (B, ...input shape without its batch axis of 1...)) -> (B, classes)``.

    Float weights (input 1) and biases (input 2) of Conv/Gemm/MatMul are
    parameters; every other initializer is a constant.  ``scheme`` None runs the
    float graph; otherwise fake quantization as the scheme says (see the module
    docstring) - activation scales must be set first (:meth:`calibrate`).
    """

    def __init__(self, model: onnx.ModelProto, scheme: str | None = None, method: str = "mse",
                 rounding: str = "half_up") -> None:
        super().__init__()
        from quant.pow2 import quant_points

        if scheme is not None and scheme not in SCHEMES:
            raise BadInput(f"QAT scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
        if rounding not in ROUNDINGS:
            raise BadInput(f"QAT rounding {rounding!r}; valid: {', '.join(ROUNDINGS)}")
        self.rounding = rounding
        self.model = onnx.ModelProto.FromString(model.SerializeToString())
        g = self.model.graph
        self.scheme = scheme
        self.method = method
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.input_name = next(i.name for i in g.input if i.name not in inits)
        self.input_shape = tuple(d.dim_value for d in next(i for i in g.input if i.name == self.input_name)
                                 .type.tensor_type.shape.dim)
        if not self.input_shape or self.input_shape[0] != 1:
            raise BadInput(f"QAT: the model input {self.input_name!r} must have a batch axis of 1, "
                           f"got {self.input_shape}")
        self.output_name = g.output[0].name
        self.nodes = [_Node(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output), _attrs(n))
                      for k, n in enumerate(g.node)]
        trainable = {n.ins[k] for n in self.nodes if n.op in WEIGHT_OPS for k in (1, 2)
                     if len(n.ins) > k and n.ins[k] in inits and inits[n.ins[k]].dtype == np.float32}
        self.params = nn.ParameterDict()
        self._pkey: dict[str, str] = {}
        self.consts: dict[str, torch.Tensor] = {}
        for name, arr in inits.items():
            if name in trainable:
                key = _pname(name)
                self._pkey[name] = key
                self.params[key] = nn.Parameter(torch.from_numpy(arr.copy()))
            else:
                self.consts[name] = torch.from_numpy(np.array(arr, copy=True))
        self.points: list[str] = []
        if scheme == "pow2":
            self.points = quant_points(self.model)
        elif scheme == "int8":
            self.points = int8_points(self.model)
        self._point_set = set(self.points)
        # points quantized on the host from float (ONNX QuantizeLinear, half to even): the network input,
        # or the output of the Reshape/Flatten that reads a rank-5 input
        self._host_points = {n.outs[0] for n in self.nodes if n.ins and n.ins[0] == self.input_name}
        # pow2 state: activation fraction per point; int8 state: (scale, zero point) per point
        self.act_fracs: dict[str, int] = {}
        self.act_qparams: dict[str, tuple[float, int]] = {}
        self._const_q: dict[str, torch.Tensor] = {}
        self._in_frac: dict[str, str] = {}  # weight op name -> tensor whose fraction is its input's
        self.quantize = scheme is not None
        if scheme == "pow2":
            self._prepare_pow2(inits)

    # ------------------------------------------------------------------ scheme set-up
    def _prepare_pow2(self, inits: dict[str, np.ndarray]) -> None:
        """Constant operands of Add/Mul/Concat quantized once (int8, own pow2 scale)."""
        from quant.pow2 import frac_for_tensor, quantize_array

        for n in self.nodes:
            if n.op in ("Add", "Mul", "Concat"):
                for i in n.ins:
                    if i in inits and i not in self._pkey:
                        f = frac_for_tensor(inits[i], self.method)
                        q = np.asarray(quantize_array(inits[i], f) * 2.0 ** -f, np.float32)
                        self._const_q[i] = torch.from_numpy(q)

    def frac_of(self) -> dict[str, int]:
        """Fraction of every quantized activation tensor: the points, then carried
        through structural ops (as :func:`quant.pow2.quantize` does)."""
        from quant.pow2 import STRUCTURAL_OPS

        out = dict(self.act_fracs)
        for n in self.nodes:
            if n.op in STRUCTURAL_OPS and n.ins and n.ins[0] in out and n.outs[0] not in out:
                out[n.outs[0]] = out[n.ins[0]]
        return out

    # ------------------------------------------------------------------ calibration
    def calibrate(self, clips: Sequence[np.ndarray]) -> None:
        """Activation scales from ``clips`` (each the model input shape): pow2 with
        :func:`quant.pow2.calibrate` on the current weights (what export will do);
        int8 min/max ranges from a float run."""
        if self.scheme == "pow2":
            from quant.pow2 import calibrate

            self.act_fracs = calibrate(self.to_onnx(), self.points, [np.asarray(c, np.float32) for c in clips],
                                       self.method)
        elif self.scheme == "int8":
            lo = dict.fromkeys(self.points, 0.0)
            hi = dict.fromkeys(self.points, 0.0)
            with torch.no_grad():
                for c in clips:
                    env = self._forward(torch.from_numpy(np.asarray(c, np.float32)), quantize=False, keep=True)
                    for p in self.points:
                        lo[p] = min(lo[p], float(env[p].min()))
                        hi[p] = max(hi[p], float(env[p].max()))
            self.act_qparams = {}
            for p in self.points:
                scale = max(hi[p] - lo[p], 1e-8) / 255.0
                zp = int(np.clip(round(-128 - lo[p] / scale), -128, 127))
                self.act_qparams[p] = (scale, zp)

    # ------------------------------------------------------------------ export
    def to_onnx(self) -> onnx.ModelProto:
        """The fp32 ONNX model holding the current weights."""
        m = onnx.ModelProto.FromString(self.model.SerializeToString())
        for init in m.graph.initializer:
            if init.name in self._pkey:
                init.CopyFrom(numpy_helper.from_array(
                    self.params[self._pkey[init.name]].detach().cpu().numpy().astype(np.float32), init.name))
        return m

    def qparams(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "method": self.method, "rounding": self.rounding,
                "act_fracs": dict(self.act_fracs),
                "act_qparams": {k: list(v) for k, v in self.act_qparams.items()}}

    def load_qparams(self, q: dict[str, Any]) -> None:
        self.act_fracs = {str(k): int(v) for k, v in q.get("act_fracs", {}).items()}
        self.act_qparams = {str(k): (float(v[0]), int(v[1])) for k, v in q.get("act_qparams", {}).items()}

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, *input shape[1:]) -> logits (B, *output shape[1:])."""
        y = self._forward(x, quantize=self.quantize)[self.output_name]
        return y.reshape(y.shape[0], *y.shape[2:])

    def _forward(self, x: torch.Tensor, quantize: bool, keep: bool = False) -> dict[str, torch.Tensor]:
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            raise BadInput(f"QAT: input of shape {tuple(x.shape)}, the model takes (B, {self.input_shape[1:]})")
        if quantize and self.scheme == "pow2" and self.points and not self.act_fracs:
            raise RuntimeError("QAT: activation scales not calibrated (call calibrate first)")
        env: dict[str, torch.Tensor] = {self.input_name: x.unsqueeze(1)}
        fracs = self.frac_of() if quantize and self.scheme == "pow2" else {}
        if quantize and self.input_name in self._point_set:
            env[self.input_name] = self._fq_act(self.input_name, env[self.input_name])
        last_use: dict[str, int] = {}
        if not keep:
            for k, n in enumerate(self.nodes):
                for i in n.ins:
                    last_use[i] = k
        wfrac: dict[str, int] = {}  # weight fraction per node (its bias is rounded at f_in + f_w)
        for k, n in enumerate(self.nodes):
            args: list[Any] = []
            for j, i in enumerate(n.ins):
                if not i:
                    args.append(None)
                elif i in env:
                    args.append(env[i])
                elif i in self._pkey:
                    w = self.params[self._pkey[i]]
                    args.append(self._fq_param(n, j, w, fracs, wfrac) if quantize else w)
                elif quantize and i in self._const_q:
                    args.append(self._const_q[i])
                elif i in self.consts:
                    args.append(self.consts[i])
                else:
                    raise BadInput(f"QAT: {n.name} reads {i!r}, which nothing produces")
            y = _run(n, args, {i for i in n.ins if i in env})
            out = n.outs[0]
            if quantize and out in self._point_set:
                y = self._fq_act(out, y)
            env[out] = y
            if not keep:
                for i in n.ins:
                    if last_use.get(i) == k and i != self.output_name:
                        env.pop(i, None)
        return env

    def _fq_act(self, name: str, y: torch.Tensor) -> torch.Tensor:
        if self.scheme == "pow2":
            f = self.act_fracs[name]
            if self.rounding == "half_up" and name != self.input_name and name not in self._host_points:
                return fake_quantize_half_up(y, f)
            return torch.fake_quantize_per_tensor_affine(y, 2.0 ** -f, 0, -128, 127)
        scale, zp = self.act_qparams[name]
        return torch.fake_quantize_per_tensor_affine(y, scale, zp, -128, 127)

    def _fq_param(self, n: _Node, j: int, w: torch.Tensor, fracs: dict[str, int],
                  wfrac: dict[str, int] | None = None) -> torch.Tensor:
        """Input ``j`` (1: weight, 2: bias) of weight op ``n`` fake-quantized; pow2 records the
        weight's fraction in ``wfrac`` for the bias (read after it)."""
        wfrac = {} if wfrac is None else wfrac
        if self.scheme == "pow2":
            from quant.pow2 import frac_for_tensor

            if j == 1:
                f = frac_for_tensor(w.detach().cpu().numpy(), self.method)
                wfrac[n.name] = f
                return torch.fake_quantize_per_tensor_affine(w, 2.0 ** -f, 0, -128, 127)
            fx = fracs.get(n.ins[0])
            if fx is None or n.name not in wfrac:
                raise BadInput(f"QAT: input of {n.op} '{n.name}' is not quantized")
            e = fx + wfrac[n.name]
            q = torch.clamp(torch.round(w * 2.0 ** e), -_INT32 - 1, _INT32) * 2.0 ** -e
            return w + (q - w).detach()
        if j == 2:
            return w  # ORT / NNCF keep the bias at the product of scales: negligible
        axis = 0 if n.op != "MatMul" and not (n.op == "Gemm" and not int(n.attrs.get("transB", 0))) else 1
        red = tuple(d for d in range(w.dim()) if d != axis)
        amax = w.detach().abs().amax(dim=red).clamp_min(1e-12)
        scale = (amax / 127.0).to(torch.float32)
        zp = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zp, axis, -127, 127)


def fake_quantize_half_up(x: torch.Tensor, f: int) -> torch.Tensor:
    """``sat(floor(x * 2^f + 1/2)) * 2^-f`` (int8, the device's round half up) with the
    straight-through estimator of ``torch.fake_quantize_per_tensor_affine``: gradient 1
    where the value is inside the int8 range, 0 where it saturates."""
    s = 2.0 ** f
    q = torch.floor(x.detach() * s + 0.5)
    inside = (q >= -128) & (q <= 127)
    return torch.clamp(q, -128, 127) / s + (x - x.detach()) * inside


# ----------------------------------------------------------------------------- batched ONNX ops
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


def _run(n: _Node, args: list[Any], batched: set[str]) -> torch.Tensor:
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


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class QatConfig:
    """Fine-tuning hyper-parameters (CPU-sized defaults)."""

    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    limit: int | None = None  # training clips per epoch (None: all)
    recalibrate: bool = True  # pow2/int8 activation scales again after every epoch

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"QAT: bad configuration {self}")


@dataclass
class QatResult:
    epochs_done: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def lr_at(cfg: QatConfig, step: int, total: int) -> float:
    """Cosine decay from ``lr`` to 0 over ``total`` steps (no warm-up: the weights are trained)."""
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def evaluate(net: nn.Module, clips_u8: np.ndarray, labels: np.ndarray, batch: int = 16) -> float:
    """Top-1 of ``net`` on uint8 clips (N, 3, T, S, S) (normalised as in training)."""
    from edge.train import to_input

    net.eval()
    hits = 0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            x = to_input(clips_u8[s:s + batch], torch.device("cpu"))
            hits += int((net(x).argmax(dim=1).numpy() == labels[s:s + batch]).sum())
    return hits / max(1, len(labels))


def _save(path: Path, net: GraphNet, opt: torch.optim.Optimizer, cfg: QatConfig, epoch: int, step: int,
          history: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"params": {name: net.params[key].detach().clone() for name, key in net._pkey.items()},
                "qparams": net.qparams(),
                "opt": opt.state_dict(), "config": asdict(cfg), "epoch": epoch, "step": step, "history": history},
               tmp)
    os.replace(tmp, path)


def finetune(net: GraphNet, clips_u8: np.ndarray, labels: np.ndarray, calib: Sequence[np.ndarray],
             cfg: QatConfig, out: str | Path | None = None, resume: bool = True,
             val: tuple[np.ndarray, np.ndarray] | None = None,
             on_epoch: Callable[[dict[str, Any]], None] | None = None) -> QatResult:
    """QAT of ``net`` (fake quantization on) on uint8 training clips (N, 3, T, S, S)
    with ``labels`` (N,); ``calib`` clips (1, 3, T, S, S) set the activation scales
    (before training, after every epoch with ``cfg.recalibrate``, and at the end).
    ``out``: checkpoint written after every epoch (resumed from when ``resume``).
    ``val``: (clips, labels) evaluated after every epoch (top-1 in the history)."""
    from edge.train import to_input

    if len(labels) != len(clips_u8) or len(labels) == 0:
        raise BadInput(f"QAT: {len(clips_u8)} clips and {len(labels)} labels")
    if not calib:
        raise BadInput("QAT: no calibration clips")
    net.quantize = True
    opt = torch.optim.AdamW([p for p in net.params.values()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(labels) if cfg.limit is None else min(cfg.limit, len(labels))
    per_epoch = max(1, n // cfg.batch_size)
    total = cfg.epochs * per_epoch
    epoch, step, history = 0, 0, []
    path = Path(out) if out is not None else None
    if path is not None and resume and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("config") != asdict(cfg) or \
                state["qparams"].get("rounding", net.rounding) != net.rounding:
            raise BadInput(f"{path}: a QAT checkpoint of another configuration ({state.get('config')}); "
                           "remove it or pass another --out")
        saved = state["params"]
        if set(saved) != set(net._pkey):  # keyed otherwise (an older run): the same initializers, in order
            if len(saved) != len(net._pkey):
                raise BadInput(f"{path}: a QAT checkpoint of another model ({len(saved)} weight tensors, "
                               f"this one has {len(net._pkey)})")
            saved = dict(zip(net._pkey, saved.values()))
        with torch.no_grad():
            for name, v in saved.items():
                net.params[net._pkey[name]].copy_(v)
        net.load_qparams(state["qparams"])
        opt.load_state_dict(state["opt"])
        epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        log.info("QAT: resumed from %s at epoch %d (step %d)", path, epoch, step)
    else:
        net.calibrate(calib)
    t0 = time.perf_counter()
    while epoch < cfg.epochs:
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(labels))[:n]
        net.train()
        losses, hits, seen = [], 0, 0
        te = time.perf_counter()
        for b in range(per_epoch):
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            x = to_input(clips_u8[idx], torch.device("cpu"))
            y = torch.from_numpy(np.asarray(labels[idx], dtype=np.int64))
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step, total)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            lv = float(loss.detach())
            losses.append(lv)
            hits += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if b % 10 == 0:
                log.info("QAT epoch %d step %d/%d loss %.4f (%.2f s/step)", epoch + 1, b + 1, per_epoch,
                         lv, (time.perf_counter() - te) / (b + 1))
        epoch += 1
        if cfg.recalibrate or epoch == cfg.epochs:
            net.calibrate(calib)
        rec: dict[str, Any] = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)),
                               "train_top1": hits / max(1, seen), "seconds": round(time.perf_counter() - te, 1)}
        if val is not None:
            rec["val_top1"] = evaluate(net, *val)
        history.append(rec)
        log.info("QAT epoch %d: %s", epoch, rec)
        if path is not None:
            _save(path, net, opt, cfg, epoch, step, history)
        if on_epoch is not None:
            on_epoch(rec)
    if cfg.epochs == 0 or (history and not cfg.recalibrate and epoch != cfg.epochs):
        net.calibrate(calib)
    net.eval()
    return QatResult(epoch, step, history, time.perf_counter() - t0)


def prepare(source: onnx.ModelProto, target: str, hard_activations: bool = True,
            method: str = "mse", rounding: str = "half_up") -> GraphNet:
    """The QAT module for ``target`` from the exported fp32 ONNX model: fpga lowers
    it (``targets.lowering.lower`` with the fpga op set, as compile does)."""
    if target not in TARGET_SCHEME:
        raise BadInput(f"QAT for target {target!r} is not supported (supported: {', '.join(TARGET_SCHEME)})")
    scheme = TARGET_SCHEME[target]
    if scheme == "pow2":
        from targets.lowering import lower
        from targets.opset import FPGA_OPSET

        source = lower(source, FPGA_OPSET, hard_activations=hard_activations)
    return GraphNet(qat_graph(source, scheme), scheme, method, rounding)


# ----------------------------------------------------------------------------- the job behind `edgevid qat`
POW2_METHOD = {"minmax": "maxabs", "percentile": "mse", "entropy": "mse"}  # as targets.fpga maps CalibSet methods


def qat_job(model: str, target: str, data: str, out: str | Path, *, ckpt: str | None = None, width: float = 1.0,
            resolution: int | None = None, frames: int | None = None, cfg: QatConfig = QatConfig(),
            calib: str | None = None, calib_clips: int = 32, calib_method: str = "minmax",
            val: str | None = None, hard_activations: bool = False, resume: bool = True) -> dict[str, Any]:
    """QAT of a zoo model (``ckpt``: plain or slimmable checkpoint) for ``target`` on the
    labelled clips ``data``, then the int8 artifact of the fine-tuned model through
    the target's normal int8 compile (same calibration clips).  Writes into ``out``:
    ``qat.pt`` (resumable), ``qat_model.onnx`` (the fine-tuned fp32 graph) and
    ``artifact/``; the artifact's fidelity against the QAT module on the
    calibration set's held-out clips goes to its ``notes.qat``.  Returns a summary."""
    from dataclasses import replace

    from edge.compile import build_from_checkpoint
    from edge.export import export_onnx
    from edge.models import create_model
    from edge.train import build_cache
    from edge.models.registry import variant as zoo_variant
    from quant.calib import read_calib
    from quant.fidelity import fidelity
    from targets.registry import TargetOptions, get_target

    if target not in TARGET_SCHEME:
        raise BadInput(f"QAT for target {target!r} is not supported (supported: {', '.join(TARGET_SCHEME)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variant = zoo_variant(model, width, resolution, frames)
    if ckpt is None:
        log.warning("QAT of untrained weights (no --ckpt)")
        torch_model, notes = create_model(variant, 10).eval(), {}
    else:
        torch_model, notes = build_from_checkpoint(ckpt, variant)
    export_onnx(torch_model, variant.input_shape, out / "source.onnx")
    calib_set = read_calib(calib or data, variant.input_shape, clips=calib_clips, method=calib_method,
                           progress=False)
    net = prepare(onnx.load(str(out / "source.onnx")), target, hard_activations=hard_activations,
                  method=POW2_METHOD[calib_method])
    train = build_cache(data, variant.frames, variant.resolution, out / "cache" / "train")
    n_out = net.model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    if n_out and int(train.labels.max()) >= n_out:
        raise BadInput(f"{data}: labels up to {int(train.labels.max())}, the model has {n_out} classes")
    val_set = None
    if val is not None:
        v = build_cache(val, variant.frames, variant.resolution, out / "cache" / "val")
        val_set = (v.clips, v.labels)
    res = finetune(net, train.clips, train.labels, list(calib_set.clips), cfg, out=out / "qat.pt", resume=resume,
                   val=val_set)
    onnx.save(net.to_onnx(), str(out / "qat_model.onnx"))
    tgt = get_target(target, TargetOptions(hard_activations=hard_activations))
    art = tgt.compile(out / "qat_model.onnx", replace(variant, precision="int8"), out / "artifact", calib=calib_set)
    runner = tgt.load(art) if tgt.available() else None
    fid = None
    if runner is not None:
        held = list(calib_set.held_out)
        with torch.no_grad():
            ref = np.concatenate([net(torch.from_numpy(np.asarray(c, np.float32))).numpy() for c in held])
        got = np.concatenate([np.asarray(runner(np.asarray(c, np.float32))).reshape(1, -1) for c in held])
        fid = fidelity(ref, got, list(calib_set.held_out_labels)).to_json()
        if hasattr(runner, "close"):
            runner.close()
    qat_notes = {"scheme": net.scheme, "epochs": res.epochs_done, "steps": res.steps, "config": asdict(cfg),
                 "data": str(data), "history": res.history, "fidelity_vs_qat_module": fid,
                 "source_accuracy": notes.get("accuracy")}
    art = art.with_(notes={**art.notes, "qat": qat_notes}).write()
    return {"artifact": str(art.path), "status": art.status, "variant": art.variant, "target": target,
            "qat_model": str(out / "qat_model.onnx"), "val_top1": res.history[-1].get("val_top1") if res.history
            else None, **qat_notes}


__all__ = ["GraphNet", "INT8_POINT_OPS", "QatConfig", "QatResult", "ROUNDINGS", "SCHEMES", "TARGET_SCHEME", "evaluate",
           "fake_quantize_half_up", "finetune", "int8_points", "lr_at", "prepare", "qat_graph", "qat_job"]
