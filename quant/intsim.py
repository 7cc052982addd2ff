"""Integer-only simulator of the fpga power-of-two int8 datapath (the "device").

Executes a QDQ model written by :mod:`quant.pow2` (lowered, inside ``FPGA_OPSET``)
with integer arithmetic: int8 activations and weights, int32 bias, wide integer
accumulators, requantization by arithmetic shifts, saturation.  A value in the
graph is one of

* ``Q``: an int8 tensor ``q`` with fraction length ``f`` (real value ``q * 2^-f``);
* ``Wide``: an integer accumulator ``acc`` at fraction ``e`` with an integer
  divisor ``d`` (1 except after average pooling) and pending Relu/Clip - what a
  compute op hands to its output QuantizeLinear;
* a float tensor (only the network input before its QuantizeLinear, on the host).

Rules (bit-exact by construction; ``>>`` is an arithmetic shift):

* **Input** (host, float -> int8): ``sat(round_half_even(x * 2^f))``, ONNX
  QuantizeLinear's rule.
* **Requantize** ``Wide(acc, e, d)`` to fraction ``f``: the DPU rounds half up
  (Vitis AI ``dpu_round``: ``floor(x + 0.5)``), so with ``s = e - f``:
  ``(acc + (1 << (s - 1))) >> s`` for ``d = 1, s > 0``; ``acc << -s`` for ``s <= 0``;
  in general ``floor((2 * num + den) / (2 * den))`` with ``num = acc << max(0, -s)``,
  ``den = d << max(0, s)`` (floor division) - the exact rational rounded half up.
  Then saturate to [-128, 127], then the pending activations: Relu ``max(q, 0)``,
  Clip ``clip(q, R(lo * 2^f), R(hi * 2^f))`` with ``R`` the same half-up rounding
  (equal to quantizing the clipped real value, rounding being monotonic).
* **Conv / Gemm / MatMul**: ``acc = sum(q_x * q_w) + b_int32`` at ``e = f_x + f_w``.
  Dot products run as float32 BLAS on small integers when every partial sum
  stays below 2^24, else float64 (below 2^53, asserted): exact either way; accumulators beyond int32 are counted
  (``overflows``) - none is expected for int8 x int8 with K < 2^17.
* **Add**: inputs aligned to ``e = max(f_a, f_b)`` by left shifts, summed.
  **Mul**: ``q_a * q_b`` at ``e = f_a + f_b``.  **Concat**: each input shifted to
  ``e = max(f_i)``; its QuantizeLinear rescales to the output fraction.
* **AveragePool / GlobalAveragePool**: integer sum of the window at ``e = f_x``,
  ``d`` = window size (count_include_pad) - the mean is rounded half up by exact
  integer division at requantization (the DPU approximates ``1/d`` by a
  multiply-shift for some sizes; here the division is exact).
* **MaxPool / GlobalMaxPool / Relu / Clip on int8** and the structural ops
  (Reshape, Flatten, Transpose, Slice, Pad with 0) act on the int8 values and keep
  ``f``.
* ``Simulator(model, rounding="half_even")`` swaps the half-up rule for ONNX
  QuantizeLinear's half-to-even everywhere: the simulator then reproduces ONNX
  Runtime's run of the QDQ model up to ORT's float32 arithmetic, a cross-check
  of the integer interpreter (tests use it); ``"half_up"`` (default) is the device.
* **Output**: the logits of a final Conv/Gemm/MatMul (no QuantizeLinear after it:
  :mod:`quant.pow2` keeps them in int32) are the accumulator times ``2^-e``
  (``s_in * s_w``, divided by ``d`` after a pool) as float32 - no int8 rounding,
  so ties at the top are as rare as in float; a quantized output is its int8
  times ``2^-f``.

``Simulator.resources()`` counts what a DPU-like accelerator would hold: MACs per
layer, int8 weight + int32 bias bytes, int8 activation bytes (every buffer
written once), and the peak on-chip buffer: the largest sum of int8 activation
buffers alive at once (produced and still to be read), graph order.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

QMIN, QMAX = -128, 127
_EXACT = float(2 ** 53)
_EXACT32 = float(2 ** 24)
_INT32 = 2 ** 31
ROUNDINGS = ("half_up", "half_even")  # half_up: the DPU's; half_even: ONNX QuantizeLinear's (for cross-checks)


@dataclass
class Q:
    """int8 tensor ``q`` at fraction ``f``: real value ``q * 2^-f``."""

    q: np.ndarray
    f: int


@dataclass
class Wide:
    """Integer accumulator ``acc`` at fraction ``e``, divided by ``d``, activations pending."""

    acc: np.ndarray
    e: int
    d: Any = 1
    acts: list[tuple[str, float, float]] = field(default_factory=list)


Value = Union[Q, Wide, np.ndarray]


def round_half_up_div(num: np.ndarray, den: Any) -> np.ndarray:
    """``floor(num / den + 1/2)`` in integers (``den`` > 0, int or array)."""
    return (2 * num + den) // (2 * den)


def shift_round(acc: np.ndarray, s: int) -> np.ndarray:
    """``acc * 2^-s`` rounded half up: ``(acc + (1 << (s - 1))) >> s`` (s > 0), ``acc << -s`` else."""
    acc = acc.astype(np.int64)
    if s > 0:
        return (acc + (1 << (s - 1))) >> s
    return acc << (-s)


def round_real(x: float, f: int) -> int:
    """``R(x * 2^f)``: a real constant on the grid of fraction ``f``, rounded half up."""
    return int(math.floor(x * 2.0 ** f + 0.5))


def round_half_even_div(num: np.ndarray, den: Any) -> np.ndarray:
    """``num / den`` rounded half to even, in integers (``den`` > 0)."""
    q = num // den
    r2 = 2 * (num - q * den)
    return q + ((r2 > den) | ((r2 == den) & (q % 2 == 1)))


def requantize(w: Wide, f: int, rounding: str = "half_up") -> np.ndarray:
    """``Wide`` -> int8 at fraction ``f`` (see the module docstring)."""
    s = w.e - f
    if rounding == "half_up" and isinstance(w.d, int) and w.d == 1:
        q = shift_round(w.acc, s)
    else:
        num = w.acc.astype(np.int64) << max(0, -s)
        den = np.asarray(w.d, dtype=np.int64) << max(0, s)
        q = (round_half_up_div if rounding == "half_up" else round_half_even_div)(num, den)
    q = np.clip(q, QMIN, QMAX)
    for kind, lo, hi in w.acts:
        q = _act(q, kind, lo, hi, f, rounding)
    return q.astype(np.int8)


def dequantize_wide(w: Wide) -> np.ndarray:
    """The logits read from the accumulator: ``acc / d * 2^-e`` (float64, then
    float32), pending Relu/Clip applied to the real value; no int8 rounding."""
    y = w.acc.astype(np.float64) / np.asarray(w.d, dtype=np.float64) * 2.0 ** -w.e
    for kind, lo, hi in w.acts:
        y = np.maximum(y, 0.0) if kind == "Relu" else np.clip(y, lo, hi)
    return y.astype(np.float32)


def _act(q: np.ndarray, kind: str, lo: float, hi: float, f: int, rounding: str = "half_up") -> np.ndarray:
    if kind == "Relu":
        return np.maximum(q, 0)
    rnd = round_real if rounding == "half_up" else (lambda x, f: int(np.rint(x * 2.0 ** f)))
    qlo = QMIN if lo == -math.inf else max(QMIN, rnd(lo, f))
    qhi = QMAX if hi == math.inf else min(QMAX, rnd(hi, f))
    return np.clip(q, qlo, qhi)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` for small integers via BLAS: float32 when every partial sum
    stays below 2^24 (products of int8 are exact, so is every sum), else float64 (< 2^53)."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound >= _EXACT:
        raise OverflowError("integer dot product could exceed 2^53")
    dt = np.float32 if bound < _EXACT32 else np.float64
    return (a.astype(dt, copy=False) @ b.astype(dt, copy=False)).astype(np.int64)


def _pads(attrs: dict[str, Any], n: int) -> list[int]:
    if str(attrs.get("auto_pad", "NOTSET")) not in ("NOTSET", ""):
        raise NotImplementedError("auto_pad")
    return [int(p) for p in attrs.get("pads", [0] * 2 * n)]


def conv2d(x: np.ndarray, w: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Integer Conv (N, C, H, W) x (O, C/g, kh, kw) -> int64 (N, O, Ho, Wo), no bias."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    sh, sw = [int(s) for s in attrs.get("strides", [1, 1])]
    dh, dw = [int(d) for d in attrs.get("dilations", [1, 1])]
    pt, pl, pb, pr = _pads(attrs, 2)
    depthwise = cg == 1 and group == c and o == c
    xp = np.pad(x.astype(np.int64 if depthwise else np.float32), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1

    def tap(i: int, j: int) -> np.ndarray:  # (N, C, Ho, Wo)
        return xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]

    if depthwise:  # per-tap elementwise in int64
        acc = np.zeros((n, o, ho, wo), dtype=np.int64)
        wi = w.astype(np.int64)
        for i in range(kh):
            for j in range(kw):
                acc += tap(i, j) * wi[None, :, 0, i, j, None, None]
        return acc
    cols = np.stack([tap(i, j) for i in range(kh) for j in range(kw)], axis=2)  # (N, C, K, Ho, Wo)
    og = o // group
    outs = []
    for gi in range(group):
        xc = cols[:, gi * cg:(gi + 1) * cg].reshape(n, cg * kh * kw, ho * wo).transpose(0, 2, 1)
        wc = w[gi * og:(gi + 1) * og].reshape(og, cg * kh * kw).T.astype(np.float32)
        outs.append(_dot(xc, wc).transpose(0, 2, 1).reshape(n, og, ho, wo))
    return np.concatenate(outs, axis=1) if group > 1 else outs[0]


def _pool_windows(x: np.ndarray, attrs: dict[str, Any], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked windows (N, C, K, Ho, Wo) and the count of real (unpadded) elements per output."""
    kh, kw = [int(k) for k in attrs["kernel_shape"]]
    sh, sw = [int(s) for s in attrs.get("strides", [1, 1])]
    if int(attrs.get("ceil_mode", 0)):
        raise NotImplementedError("ceil_mode pooling")
    pt, pl, pb, pr = _pads(attrs, 2)
    n, c, h, w = x.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    ones = np.pad(np.ones((h, w), dtype=np.int64), ((pt, pb), (pl, pr)))
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    win = np.stack([xp[:, :, i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw]
                    for i in range(kh) for j in range(kw)], axis=2)
    cnt = sum(ones[i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw] for i in range(kh) for j in range(kw))
    return win, cnt


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    macs: int
    weight_bytes: int
    out_shape: tuple[int, ...]


class Simulator:
    """Integer interpreter of a pow2 QDQ fpga model: ``sim(clip) -> logits (1, classes) float32``."""

    def __init__(self, model: Any, rounding: str = "half_up") -> None:
        import onnx

        from quant.onnx_io import attrs_of, initializers

        if isinstance(model, (str, Path)):
            model = onnx.load(str(model))
        model = onnx.shape_inference.infer_shapes(model)
        g = model.graph
        self.consts: dict[str, np.ndarray] = initializers(model)
        self.nodes = [(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output), attrs_of(n))
                      for k, n in enumerate(g.node)]
        self.input = next(i.name for i in g.input if i.name not in self.consts)
        self.output = g.output[0].name
        self.shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
                       for v in list(g.value_info) + list(g.input) + list(g.output)}
        if rounding not in ROUNDINGS:
            raise BadInput(f"simulator rounding {rounding!r}; valid: {', '.join(ROUNDINGS)}")
        self.rounding = rounding
        self.overflows = 0
        self._fracs: dict[str, int] = {}
        for op, name, ins, _, _ in self.nodes:
            if op in ("QuantizeLinear", "DequantizeLinear"):
                s = float(self.consts[ins[1]])
                f = -math.log2(s)
                if f != round(f):
                    raise BadInput(f"{name}: scale {s:g} is not a power of two; not a pow2 fpga model")
                if len(ins) > 2 and ins[2] and np.any(self.consts[ins[2]] != 0):
                    raise BadInput(f"{name}: non-zero zero point; not a symmetric fpga model")
                self._fracs[name] = int(round(f))

    # ------------------------------------------------------------------ run
    def __call__(self, clip: np.ndarray) -> np.ndarray:
        env: dict[str, Value] = {self.input: np.asarray(clip, dtype=np.float32)}
        for op, name, ins, outs, a in self.nodes:
            args = [self._get(env, i) if i else None for i in ins]
            env[outs[0]] = self._run(op, name, ins, args, a)
        y = env[self.output]
        if isinstance(y, Q):
            return (y.q.astype(np.float32) * np.float32(2.0 ** -y.f)).reshape(self.shapes.get(self.output, y.q.shape))
        if isinstance(y, Wide):
            return dequantize_wide(y).reshape(self.shapes.get(self.output, y.acc.shape))
        raise RuntimeError(f"output {self.output} is not a quantized tensor")

    def _get(self, env: dict[str, Value], name: str) -> Value:
        if name in env:
            return env[name]
        return self.consts[name]

    def _bias(self, args: list[Any], e: int, name: str) -> np.ndarray | int:
        if len(args) < 3 or args[2] is None:
            return 0
        b = np.asarray(args[2], dtype=np.float64) * 2.0 ** e
        bi = np.rint(b)
        if not np.array_equal(b, bi):
            raise BadInput(f"{name}: bias is not an integer at fraction {e} (not written by quant.pow2)")
        if np.any(np.abs(bi) >= _INT32):
            raise BadInput(f"{name}: bias beyond int32")
        return bi.astype(np.int64)

    def _run(self, op: str, name: str, ins: list[str], args: list[Any], a: dict[str, Any]) -> Value:
        x = args[0]
        if op == "QuantizeLinear":
            f = self._fracs[name]
            if isinstance(x, Wide):
                return Q(requantize(x, f, self.rounding), f)
            if isinstance(x, Q):  # re-quantizing an int8 value: a shift
                return Q(requantize(Wide(x.q.astype(np.int64), x.f), f, self.rounding), f)
            return Q(np.clip(np.rint(np.asarray(x, np.float64) * 2.0 ** f), QMIN, QMAX).astype(np.int8), f)
        if op == "DequantizeLinear":
            if isinstance(x, Q):
                return x
            return Q(np.asarray(x).astype(np.int8), self._fracs[name])
        if op in ("Relu", "Clip"):
            lo, hi = (0.0, math.inf) if op == "Relu" else (
                -math.inf if len(args) < 2 or args[1] is None else float(np.asarray(args[1]).reshape(-1)[0]),
                math.inf if len(args) < 3 or args[2] is None else float(np.asarray(args[2]).reshape(-1)[0]))
            if isinstance(x, Wide):
                return Wide(x.acc, x.e, x.d, [*x.acts, (op, lo, hi)])
            if isinstance(x, Q):
                return Q(_act(x.q.astype(np.int64), op, lo, hi, x.f, self.rounding).astype(np.int8), x.f)
            return np.clip(x, lo, hi)
        if op in ("Reshape", "Flatten", "Transpose", "Slice", "Pad"):
            if isinstance(x, Q):
                return Q(self._structural(op, x.q, args, a), x.f)
            return self._structural(op, np.asarray(x), args, a)
        qs = [v for v in args if isinstance(v, Q)]
        if not qs or any(isinstance(v, (Wide, np.ndarray)) for v in args[:1]):
            raise BadInput(f"{name} ({op}): input is not an int8 tensor; the model is not quantized there")
        if op in ("Conv", "Gemm", "MatMul"):
            w = args[1]
            if not isinstance(w, Q):
                raise BadInput(f"{name} ({op}): weights are not int8")
            e = x.f + w.f
            if op == "Conv":
                acc = conv2d(x.q, w.q, a)
                b = self._bias(args, e, name)
                acc = acc + (b[None, :, None, None] if isinstance(b, np.ndarray) else 0)
            else:
                xm = x.q.astype(np.int64)
                wm = w.q.astype(np.int64)
                if op == "Gemm":
                    if int(a.get("transA", 0)) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                        raise NotImplementedError("Gemm with transA/alpha/beta")
                    wm = wm.T if int(a.get("transB", 0)) else wm
                acc = _dot(xm, wm) + (self._bias(args, e, name) if op == "Gemm" else 0)
            self.overflows += int(np.count_nonzero(np.abs(acc) >= _INT32))
            return Wide(acc, e)
        if op == "Add":
            y = args[1]
            e = max(x.f, y.f)
            return Wide((x.q.astype(np.int64) << (e - x.f)) + (y.q.astype(np.int64) << (e - y.f)), e)
        if op == "Mul":
            y = args[1]
            return Wide(x.q.astype(np.int64) * y.q.astype(np.int64), x.f + y.f)
        if op == "Concat":
            e = max(v.f for v in args)
            return Wide(np.concatenate([v.q.astype(np.int64) << (e - v.f) for v in args], axis=int(a["axis"])), e)
        if op == "GlobalAveragePool":
            n = int(np.prod(x.q.shape[2:]))
            return Wide(x.q.astype(np.int64).sum(axis=(2, 3), keepdims=True), x.f, n)
        if op == "AveragePool":
            win, cnt = _pool_windows(x.q, a, 0)
            d = int(np.prod(a["kernel_shape"])) if int(a.get("count_include_pad", 0)) else cnt[None, None]
            return Wide(win.sum(axis=2), x.f, d)
        if op == "MaxPool":
            win, _ = _pool_windows(x.q, a, QMIN)
            return Q(win.max(axis=2).astype(np.int8), x.f)
        if op == "GlobalMaxPool":
            return Q(x.q.max(axis=(2, 3), keepdims=True), x.f)
        raise BadInput(f"{name}: {op} is not simulated (not in the fpga operator set)")

    @staticmethod
    def _structural(op: str, x: np.ndarray, args: list[Any], a: dict[str, Any]) -> np.ndarray:
        if op == "Reshape":
            shape = [int(s) for s in np.asarray(args[1]).reshape(-1)]
            if not int(a.get("allowzero", 0)):
                shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
            return x.reshape(shape)
        if op == "Flatten":
            ax = int(a.get("axis", 1)) % max(x.ndim, 1)
            return x.reshape(int(np.prod(x.shape[:ax])), -1)
        if op == "Transpose":
            return x.transpose(a.get("perm", list(range(x.ndim))[::-1]))
        if op == "Slice":
            starts, ends = (np.asarray(v).reshape(-1) for v in args[1:3])
            axes = np.asarray(args[3]).reshape(-1) if len(args) > 3 and args[3] is not None else range(len(starts))
            steps = np.asarray(args[4]).reshape(-1) if len(args) > 4 and args[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                dim = x.shape[int(ax)]
                s, e, st = int(s), int(e), int(st)
                s = min(max(s + dim if s < 0 else s, 0), dim)
                e = min(max(e + dim if e < 0 else e, -1 if st < 0 else 0), dim)
                sl[int(ax)] = slice(s, e if e >= 0 else None, st)
            return x[tuple(sl)]
        if op == "Pad":
            pads = [int(p) for p in np.asarray(args[1]).reshape(-1)]
            value = 0.0 if len(args) < 3 or args[2] is None else float(np.asarray(args[2]).reshape(-1)[0])
            if value != 0.0 or str(a.get("mode", "constant")) != "constant":
                raise BadInput("Pad: only constant zero padding is simulated")
            axes = (np.asarray(args[3]).reshape(-1) if len(args) > 3 and args[3] is not None else range(x.ndim))
            width = [(0, 0)] * x.ndim
            k = len(pads) // 2
            for j, ax in enumerate(axes):
                width[int(ax)] = (pads[j], pads[j + k])
            return np.pad(x, width)
        raise AssertionError(op)

    # ------------------------------------------------------------------ resources
    def resources(self) -> dict[str, Any]:
        """MACs per layer, weight/activation bytes and the peak on-chip activation buffer."""
        layers: list[LayerCost] = []
        weight_bytes = 0
        buffers: dict[str, int] = {}  # int8 activation buffers: name -> bytes
        alias: dict[str, str] = {}
        for op, name, ins, outs, a in self.nodes:
            shp = self.shapes.get(outs[0], ())
            if op in ("Conv", "Gemm", "MatMul"):
                wq = self.consts.get(self._src(ins[1]))
                wshape = wq.shape if wq is not None else ()
                if op == "Conv":
                    o, cg, kh, kw = wshape
                    macs = int(np.prod(shp)) * cg * kh * kw
                else:
                    macs = int(np.prod(shp)) * int(wshape[1] if int(a.get("transB", 0)) else wshape[0])
                wb = int(np.prod(wshape)) + (4 * int(np.prod(self.consts[ins[2]].shape))
                                             if len(ins) > 2 and ins[2] else 0)
                weight_bytes += wb
                layers.append(LayerCost(name, op, macs, wb, tuple(shp)))
            elif op in ("Add", "Mul", "Concat") and any(self._src(i) in self.consts for i in ins):
                wb = sum(int(np.prod(self.consts[self._src(i)].shape)) for i in ins if self._src(i) in self.consts)
                weight_bytes += wb
            if op == "DequantizeLinear":
                alias[outs[0]] = alias.get(ins[0], ins[0])
            elif op in ("QuantizeLinear", "Reshape", "Flatten") and outs[0] in self.shapes:
                if op == "QuantizeLinear" or alias.get(ins[0], ins[0]) in buffers:
                    if op in ("Reshape", "Flatten"):
                        alias[outs[0]] = alias.get(ins[0], ins[0])  # a view
                    else:
                        buffers[outs[0]] = int(np.prod(self.shapes[outs[0]]))
            elif op in ("Transpose", "Slice", "Pad", "MaxPool", "GlobalMaxPool", "Relu", "Clip") and \
                    alias.get(ins[0], ins[0]) in buffers and outs[0] in self.shapes:
                buffers[outs[0]] = int(np.prod(self.shapes[outs[0]]))
        last: dict[str, int] = {}
        first: dict[str, int] = {}
        for k, (op, _, ins, outs, _) in enumerate(self.nodes):
            for o in outs:
                if o in buffers:
                    first[o] = k
            for i in ins:
                b = alias.get(i, i)
                if b in buffers:
                    last[b] = k
        peak = 0
        for k in range(len(self.nodes)):
            live = sum(v for b, v in buffers.items() if first[b] <= k <= last.get(b, first[b]))
            peak = max(peak, live)
        return {"macs": sum(layer.macs for layer in layers), "weight_bytes": weight_bytes,
                "activation_bytes": sum(buffers.values()), "peak_buffer_bytes": peak,
                "layers": [{"name": x.name, "op": x.op, "macs": x.macs, "weight_bytes": x.weight_bytes,
                            "out_shape": list(x.out_shape)} for x in layers]}

    def _src(self, name: str) -> str:
        """The int8 initializer behind a DequantizeLinear output (else ``name``)."""
        for op, _, ins, outs, _ in self.nodes:
            if op == "DequantizeLinear" and outs[0] == name:
                return ins[0]
        return name


__all__ = ["Q", "Simulator", "Wide", "conv2d", "dequantize_wide", "requantize", "round_half_up_div", "round_real",
           "shift_round"]
