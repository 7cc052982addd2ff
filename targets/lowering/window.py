"""Sliding-window attributes (Conv, MaxPool, AveragePool) with ``auto_pad`` resolved."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from edge.core.errors import BadInput

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Window:
    """kernel, strides, dilations and explicit begin/end pads, one entry per spatial axis.

    For a (N, C, T, H, W) input the axes are (T, H, W).
    """

    kernel: Shape
    strides: Shape
    dilations: Shape
    pads_begin: Shape
    pads_end: Shape
    ceil_mode: bool = False

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object], in_spatial: Sequence[int], kernel: Sequence[int],
                   where: str, pooling: bool = False) -> "Window":
        """Resolve ONNX window attributes; ``kernel`` from the weight (Conv) or ``kernel_shape``.

        SAME auto_pad whose padding formula goes negative (stride longer than the window):
        onnxruntime clamps it to 0 for Conv but crops the input for pooling; Conv is
        resolved like onnxruntime, pooling is refused (``pooling``)."""
        n = len(in_spatial)
        k = tuple(int(v) for v in attrs.get("kernel_shape", kernel))  # type: ignore[union-attr]
        s = tuple(int(v) for v in attrs.get("strides", (1,) * n))  # type: ignore[union-attr]
        d = tuple(int(v) for v in attrs.get("dilations", (1,) * n))  # type: ignore[union-attr]
        if not (len(k) == len(s) == len(d) == n):
            raise BadInput(f"{where}: kernel/strides/dilations do not match the {n} spatial axes")
        auto_pad = str(attrs.get("auto_pad", "NOTSET"))
        if auto_pad in ("NOTSET", ""):
            pads = tuple(int(v) for v in attrs.get("pads", (0,) * (2 * n)))  # type: ignore[union-attr]
            if len(pads) != 2 * n:
                raise BadInput(f"{where}: pads has {len(pads)} entries, expected {2 * n}")
            begin, end = pads[:n], pads[n:]
        elif auto_pad == "VALID":
            begin = end = (0,) * n
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            b, e = [], []
            for i in range(n):
                total = (math.ceil(in_spatial[i] / s[i]) - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_spatial[i]
                if total < 0 and not pooling:
                    total = 0
                elif total < 0:  # ONNX's formula then crops the input (onnxruntime's pooling follows it)
                    raise BadInput(f"{where}: auto_pad {auto_pad} with stride {s[i]} longer than the window "
                                   f"({(k[i] - 1) * d[i] + 1}) on an axis of {in_spatial[i]} gives negative padding "
                                   f"({total}); use explicit pads")
                small, big = total // 2, total - total // 2
                b.append(small if auto_pad == "SAME_UPPER" else big)
                e.append(big if auto_pad == "SAME_UPPER" else small)
            begin, end = tuple(b), tuple(e)
        else:
            raise BadInput(f"{where}: unknown auto_pad {auto_pad!r}")
        return cls(k, s, d, begin, end, bool(attrs.get("ceil_mode", 0)))

    def extent(self, axis: int) -> int:
        return (self.kernel[axis] - 1) * self.dilations[axis] + 1

    def out_size(self, axis: int, n: int) -> int:
        """Output length along ``axis`` for input length ``n`` (ONNX/PyTorch rule incl. ceil mode)."""
        span = n + self.pads_begin[axis] + self.pads_end[axis] - self.extent(axis)
        s = self.strides[axis]
        if not self.ceil_mode:
            return span // s + 1
        out = -(-span // s) + 1
        if (out - 1) * s >= n + self.pads_begin[axis]:  # last window would start in the end padding
            out -= 1
        return out

    def spatial(self, axes: slice) -> "Window":
        """The window restricted to some axes, e.g. ``slice(1, 3)`` for (H, W) of (T, H, W)."""
        return Window(self.kernel[axes], self.strides[axes], self.dilations[axes], self.pads_begin[axes],
                      self.pads_end[axes], self.ceil_mode)

    def is_identity(self) -> bool:
        """A 1-wide, stride-1, unpadded window (the op does nothing along these axes)."""
        return (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.strides)
                and not any(self.pads_begin) and not any(self.pads_end))

    def attrs(self) -> dict[str, object]:
        """ONNX attributes for a node with this window (explicit pads)."""
        out: dict[str, object] = {"kernel_shape": list(self.kernel), "strides": list(self.strides),
                                  "pads": [*self.pads_begin, *self.pads_end]}
        if any(d != 1 for d in self.dilations):
            out["dilations"] = list(self.dilations)
        return out
