"""Conv3d -> Conv2d, exact, in the (T, C, H, W) layout (time in the batch axis).

A 3-D convolution with kernel (kt, kh, kw), strides (st, sh, sw), dilations
(dt, dh, dw), temporal pads (pb, pe) and ``group`` g is a sum over its kt
temporal taps of 2-D convolutions::

    y[t] = bias + sum_k conv2d(x_pad[t * st + k * dt], W[:, :, k])      t = 0 .. T_out - 1

With the clip kept as (T, C, H, W) (batch 1, frames in the batch axis), tap k
is one strided ``Slice`` along axis 0 of the zero-padded input followed by one
``Conv`` (2-D, same spatial attributes and group, weight ``W[:, :, k]``), and
the taps are summed with ``Add``.  Any kt, stride, dilation, padding and group
(dense, grouped, depthwise) lowers the same way; taps that only ever read
padding frames are dropped and only the padding some tap reads is materialised.
A 1x1 temporal kernel with stride 1 and no temporal padding is one ``Conv``.

Shapes: x (T, C, H, W) -> y (T_out, O, H_out, W_out), with
T_out = floor((T + pb + pe - dt * (kt - 1) - 1) / st) + 1.
"""
from __future__ import annotations

import numpy as np
import onnx

from edge.core.errors import BadInput
from targets.lowering.graph import Graph, Shape
from targets.lowering.window import Window


def weight_tap(g: Graph, w: str, k: int, hint: str, out: list[onnx.NodeProto]) -> str:
    """``W[:, :, k]`` of a (O, C/g, kt, kh, kw) weight as a (O, C/g, kh, kw) tensor.

    A constant weight gives a new constant; any other weight (e.g. the output of a
    DequantizeLinear) a Slice + Reshape of the tensor, so the rewrite stays exact.
    """
    value = g.const(w)
    if value is not None:
        return g.add_const(np.ascontiguousarray(value[:, :, k]), f"{hint}_w{k}")
    o, cg, _, kh, kw = g.static_shape(w)  # type: ignore[misc]
    sl = g.make("Slice", [w, g.ints([k], "k0"), g.ints([k + 1], "k1"), g.ints([2], "ax2")], f"{hint}_wslice{k}")
    rs = g.make("Reshape", [sl.output[0], g.ints([o, cg, kh, kw], "wshape")], f"{hint}_wtap{k}",
                shape=(o, cg, kh, kw), elem_type=g.elem_type(w))
    out += [sl, rs]
    return rs.output[0]


def lower_conv3d(g: Graph, x: str, x_shape: Shape, w: str, bias: str | None, win: Window, group: int,
                 hint: str, out: list[onnx.NodeProto]) -> tuple[str, Shape]:
    """Append the Pad/Slice/Conv/Add nodes of a lowered Conv3d to ``out``.

    x: (T, C, H, W) value; w: (O, C/group, kt, kh, kw); returns the (T_out, O, H_out, W_out)
    output value and its shape.
    """
    t_in, c, h, wd = x_shape
    w_shape = g.static_shape(w)
    if w_shape is None or len(w_shape) != 5:
        raise BadInput(f"{hint}: Conv3d weight needs a static 5-D shape, got {g.shape(w)}")
    o_ch = w_shape[0]
    kt, st, dt = win.kernel[0], win.strides[0], win.dilations[0]
    pb = win.pads_begin[0]  # the end padding follows from T_out (only frames some tap reads are padded)
    t_out = win.out_size(0, t_in)
    h_out, w_out = win.out_size(1, h), win.out_size(2, wd)
    if min(t_out, h_out, w_out) < 1:
        raise BadInput(f"{hint}: Conv3d output would be empty for input (T, H, W) = ({t_in}, {h}, {wd})")
    et = g.elem_type(x)

    def frame(t: int, k: int) -> int:  # input frame read by output t through tap k (negative: padding)
        return t * st + k * dt - pb

    taps = [k for k in range(kt) if any(0 <= frame(t, k) < t_in for t in range(t_out))] or [0]
    first = min(frame(0, k) for k in taps)
    last = max(frame(t_out - 1, k) for k in taps)
    pad_b, pad_e = max(0, -first), max(0, last - (t_in - 1))
    xp, t_p = x, t_in + pad_b + pad_e
    if pad_b or pad_e:
        node = g.make("Pad", [x, g.ints([pad_b, 0, 0, 0, pad_e, 0, 0, 0], f"{hint}_tpads")], f"{hint}_tpad",
                      shape=(t_p, c, h, wd), elem_type=et, mode="constant")
        out.append(node)
        xp = node.output[0]

    spatial = win.spatial(slice(1, 3))
    acc: str | None = None
    for i, k in enumerate(taps):
        start = frame(0, k) + pad_b
        end = start + (t_out - 1) * st + 1
        src = xp
        if not (start == 0 and end == t_p and st == 1):
            sl = g.make("Slice", [xp, g.ints([start], "t0"), g.ints([end], "t1"), g.ints([0], "ax0"),
                                  g.ints([st], "tstep")], f"{hint}_tap{k}", shape=(t_out, c, h, wd), elem_type=et)
            out.append(sl)
            src = sl.output[0]
        inputs = [src, weight_tap(g, w, k, hint, out)]
        if bias and i == 0:
            inputs.append(bias)
        conv = g.make("Conv", inputs, f"{hint}_conv{k}" if len(taps) > 1 else hint,
                      shape=(t_out, o_ch, h_out, w_out), elem_type=et, group=group, **spatial.attrs())
        out.append(conv)
        y = conv.output[0]
        if acc is None:
            acc = y
        else:
            add = g.make("Add", [acc, y], f"{hint}_sum{k}", shape=(t_out, o_ch, h_out, w_out), elem_type=et)
            out.append(add)
            acc = add.output[0]
    assert acc is not None
    return acc, (t_out, o_ch, h_out, w_out)
