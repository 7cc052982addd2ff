"""3-D pooling -> 2-D pooling, exact, in the (T, C, H, W) layout.

A box max or average over (kt, kh, kw) is separable: pool (kh, kw) over space
on the (T, C, H, W) tensor, then pool kt over time.  The temporal stage views
the (T, C, H', W') result as a (1, 1, T, C*H'*W') image (a free reshape) and
pools it with a (kt, 1) window carrying the temporal stride, dilation, pads,
``ceil_mode`` and ``count_include_pad``, so padding and divisor semantics are
the runtime's own, axis by axis:

* MaxPool: max over the box = max over time of the max over space.
* AveragePool: the divisor of a box is the product of its per-axis counts (all
  positions with ``count_include_pad=1``, the valid ones with 0), so average of
  averages is exact.

A temporal window that covers all T frames unpadded (the X3D head) becomes
``Transpose`` + ``GlobalAveragePool``/``GlobalMaxPool`` when the spatial map is
1x1.  GlobalAveragePool/GlobalMaxPool over (1, C, T, H, W) lower the same way.
"""
from __future__ import annotations

import onnx

from targets.lowering.graph import Graph, Shape
from targets.lowering.window import Window

GLOBAL = {"MaxPool": "GlobalMaxPool", "AveragePool": "GlobalAveragePool"}


def _pool_attrs(g: Graph, op: str, win: Window, count_include_pad: int) -> dict[str, object]:
    attrs = win.attrs()
    if win.ceil_mode:
        attrs["ceil_mode"] = 1
    if op == "AveragePool" and count_include_pad:
        attrs["count_include_pad"] = 1
    return attrs


def temporal_global(g: Graph, op: str, x: str, shape: Shape, hint: str, out: list[onnx.NodeProto]) -> str:
    """Pool all T frames of a (T, C, H, W) value -> (1, C, H, W); op is MaxPool/AveragePool."""
    t, c, h, w = shape
    et = g.elem_type(x)
    if t == 1:
        return x
    if h * w == 1:
        tr = g.make("Transpose", [x], f"{hint}_ct", shape=(1, c, t, 1), elem_type=et, perm=[2, 1, 0, 3])
        gp = g.make(GLOBAL[op], [tr.output[0]], f"{hint}_tpool", shape=(1, c, 1, 1), elem_type=et)
        out += [tr, gp]
        return gp.output[0]
    win = Window((t, 1), (1, 1), (1, 1), (0, 0), (0, 0))
    return temporal_pool(g, op, x, shape, win, 0, hint, out)


def temporal_pool(g: Graph, op: str, x: str, shape: Shape, win: Window, count_include_pad: int, hint: str,
                  out: list[onnx.NodeProto]) -> str:
    """Pool a (T, C, H, W) value over T with the 2-D ``win`` (kt, 1) -> (T_out, C, H, W)."""
    t, c, h, w = shape
    et = g.elem_type(x)
    t_out = win.out_size(0, t)
    r1 = g.make("Reshape", [x, g.ints([1, 1, t, c * h * w], f"{hint}_img")], f"{hint}_as_img",
                shape=(1, 1, t, c * h * w), elem_type=et)
    pool = g.make(op, [r1.output[0]], f"{hint}_tpool", shape=(1, 1, t_out, c * h * w), elem_type=et,
                  **_pool_attrs(g, op, win, count_include_pad))
    r2 = g.make("Reshape", [pool.output[0], g.ints([t_out, c, h, w], f"{hint}_tchw")], f"{hint}_as_tchw",
                shape=(t_out, c, h, w), elem_type=et)
    out += [r1, pool, r2]
    return r2.output[0]


def lower_pool3d(g: Graph, op: str, x: str, x_shape: Shape, win: Window, count_include_pad: int, hint: str,
                 out: list[onnx.NodeProto]) -> tuple[str, Shape]:
    """Append the nodes of a lowered 3-D MaxPool/AveragePool to ``out``.

    x: (T, C, H, W) value; ``win`` over (T, H, W); returns the (T_out, C, H_out, W_out) value and shape.
    """
    t, c, h, w = x_shape
    et = g.elem_type(x)
    y, shape = x, x_shape
    spatial = win.spatial(slice(1, 3))
    if not spatial.is_identity():
        shape = (t, c, spatial.out_size(0, h), spatial.out_size(1, w))
        node = g.make(op, [x], f"{hint}_hw" if not win.spatial(slice(0, 1)).is_identity() else hint, shape=shape,
                      elem_type=et, **_pool_attrs(g, op, spatial, count_include_pad))
        out.append(node)
        y = node.output[0]
    temporal = win.spatial(slice(0, 1))
    if temporal.is_identity():
        return y, shape
    kt, dt = temporal.kernel[0], temporal.dilations[0]
    if kt == t and dt == 1 and not temporal.pads_begin[0] and not temporal.pads_end[0]:
        y = temporal_global(g, op, y, shape, hint, out)
        return y, (1, *shape[1:])
    win2 = Window((kt, 1), (temporal.strides[0], 1), (dt, 1), (temporal.pads_begin[0], 0),
                  (temporal.pads_end[0], 0), temporal.ceil_mode)
    y = temporal_pool(g, op, y, shape, win2, count_include_pad, hint, out)
    return y, (win2.out_size(0, t), *shape[1:])


def lower_global_pool3d(g: Graph, op: str, x: str, x_shape: Shape, hint: str,
                        out: list[onnx.NodeProto]) -> tuple[str, Shape]:
    """GlobalAveragePool/GlobalMaxPool of a (T, C, H, W) value over all of T, H, W -> (1, C, 1, 1)."""
    pool = "AveragePool" if op == "GlobalAveragePool" else "MaxPool"
    t, c, h, w = x_shape
    y = x
    if h * w > 1:
        node = g.make(op, [x], f"{hint}_hw", shape=(t, c, 1, 1), elem_type=g.elem_type(x))
        out.append(node)
        y = node.output[0]
    return temporal_global(g, pool, y, (t, c, 1, 1), hint, out), (1, c, 1, 1)
