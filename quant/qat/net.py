"""An fp32 ONNX graph as a trainable, fake-quantized PyTorch module.

    GraphNet(model, scheme=None | "pow2" | "int8", method="mse", rounding="half_up")
        net(x (B, *input shape[1:])) -> logits (B, classes); .calibrate(clips), .to_onnx(),
        .qparams() / .load_qparams(q)
    fake_quantize_half_up(x, f) -> int8 at scale 2^-f, rounding half up, straight-through gradient

The schemes are described in :mod:`quant.qat`.
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from edge.core.errors import BadInput
from quant.pow2 import STRUCTURAL_OPS, frac_for_tensor, quant_points, quantize_array
from quant.pow2 import calibrate as pow2_calibrate
from quant.qat.ops import Node, node_attrs, run_node
from quant.qat.scheme import ROUNDINGS, SCHEMES, WEIGHT_OPS, int8_points

_INT32 = 2 ** 31 - 1


def _pname(name: str) -> str:
    """A ParameterDict key for an ONNX initializer name (stable across processes)."""
    return "p" + "".join(c if c.isalnum() else "_" for c in name) + f"_{zlib.crc32(name.encode()):08x}"


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
        self.nodes = [Node(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output), node_attrs(n))
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
            self.act_fracs = pow2_calibrate(self.to_onnx(), self.points, [np.asarray(c, np.float32) for c in clips],
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
            y = run_node(n, args, {i for i in n.ins if i in env})
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

    def _fq_param(self, n: Node, j: int, w: torch.Tensor, fracs: dict[str, int],
                  wfrac: dict[str, int] | None = None) -> torch.Tensor:
        """Input ``j`` (1: weight, 2: bias) of weight op ``n`` fake-quantized; pow2 records the
        weight's fraction in ``wfrac`` for the bias (read after it)."""
        wfrac = {} if wfrac is None else wfrac
        if self.scheme == "pow2":
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


__all__ = ["GraphNet", "fake_quantize_half_up"]
