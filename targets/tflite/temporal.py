"""3D torch modules as 2D modules on a frames-first (T, C, H, W) tensor (frames in
the batch axis, batch 1), the building blocks of :func:`targets.tflite.lower2d.to_2d`.

* :class:`TemporalConv2d` (an ``nn.Conv3d``: temporal padding = a ``pad`` along
  dim 0, each temporal tap ``k`` a strided slice of frames, the output the sum of
  ``kt`` Conv2d (``temporal="sum"``) or one Conv2d over the taps stacked into
  channels (``temporal="concat"``));
* ``nn.BatchNorm3d`` -> ``nn.BatchNorm2d`` (same statistics);
* :class:`TemporalAvgPool2d` / :class:`TemporalMaxPool2d` /
  :class:`TemporalAdaptivePool2d`: a 2D pool per frame, then a sum (with
  PyTorch's divisors) or max over the temporal window.

API: ``lower_module(m, temporal) -> nn.Module | None`` (the 2D replacement of a
3D module), ``MODULES_3D`` (the 3D module types it lowers), ``TEMPORAL_MODES``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.core.errors import BadInput

TEMPORAL_MODES: tuple[str, ...] = ("sum", "concat")

# ----------------------------------------------------------------------------- temporal helpers


def _tpad(x: torch.Tensor, left: int, right: int, mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """Pad frames: (T, C, H, W) -> (left + T + right, C, H, W)."""
    if left == 0 and right == 0:
        return x
    if mode in ("zeros", "constant"):
        return F.pad(x, (0, 0, 0, 0, 0, 0, left, right), value=value)
    t = x.shape[0]
    if mode == "replicate":
        parts = [x[:1]] * left + [x] + [x[t - 1:]] * right
    elif mode == "reflect":
        parts = [x[i:i + 1] for i in range(left, 0, -1)] + [x] + [x[t - 2 - i:t - 1 - i] for i in range(right)]
    elif mode == "circular":
        parts = [x[t - left:]] + [x] + [x[:right]]
    else:
        raise BadInput(f"Conv3d padding_mode {mode!r} is not supported by the 2D lowering")
    return torch.cat([p for p in parts if p.shape[0] > 0], dim=0)


def _taps(x: torch.Tensor, kt: int, dt: int, st: int, t_out: int) -> list[torch.Tensor]:
    """The ``kt`` frame slices of a padded (T_p, ...) tensor: tap k is frames
    k*dt, k*dt + st, ..., t_out of them."""
    return [x[k * dt: k * dt + (t_out - 1) * st + 1: st] for k in range(kt)]


def _sum(ts: list[torch.Tensor]) -> torch.Tensor:
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length (``pooling_output_shape``)."""
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _triple(v: Any) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- 3D module -> 2D module


class TemporalConv2d(nn.Module):
    """A Conv3d as Conv2d over (T, C_in, H, W) -> (T_out, C_out, H_out, W_out).

    ``temporal="sum"``: ``kt`` Conv2d, one per temporal tap (weight[:, :, k]), summed;
    ``"concat"``: one Conv2d with C_in * kt inputs over the taps concatenated along
    channels (channel k * C_in + c; grouped convs interleave them, c * kt + k, so
    that each group's channels stay contiguous).  kt == 1 is one Conv2d.
    """

    def __init__(self, conv: nn.Conv3d, temporal: str = "sum") -> None:
        super().__init__()
        if temporal not in TEMPORAL_MODES:
            raise BadInput(f"temporal mode must be one of {', '.join(TEMPORAL_MODES)}, got {temporal!r}")
        kt, kh, kw = conv.kernel_size
        st, sh, sw = conv.stride
        dt, dh, dw = conv.dilation
        # F.pad order (w_l, w_r, h_l, h_r, t_l, t_r); also right for padding="same"
        pw_l, pw_r, ph_l, ph_r, pt_l, pt_r = conv._reversed_padding_repeated_twice
        self.kt, self.st, self.dt, self.pt = kt, st, dt, (pt_l, pt_r)
        self.padding_mode = conv.padding_mode
        self.temporal = temporal if kt > 1 else "sum"
        # spatial padding goes into the Conv2d when symmetric, else an explicit pad
        symmetric = ph_l == ph_r and pw_l == pw_r
        self.spad = None if symmetric else (pw_l, pw_r, ph_l, ph_r)
        c_in = conv.in_channels * (kt if self.temporal == "concat" else 1)

        def conv2d(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
            c = nn.Conv2d(c_in, conv.out_channels, (kh, kw), (sh, sw), (ph_l, pw_l) if symmetric else 0, (dh, dw),
                          conv.groups, bias is not None, conv.padding_mode if symmetric else "zeros",
                          device="meta")  # no random init: the weights come from the Conv3d
            c.weight = nn.Parameter(weight.clone().contiguous(), requires_grad=False)
            if bias is not None:
                c.bias = nn.Parameter(bias.clone(), requires_grad=False)
            return c

        w = conv.weight.detach()
        b = None if conv.bias is None else conv.bias.detach()
        if self.temporal == "concat" and conv.groups == 1:  # channel k * C_in + c (taps concatenated)
            self.convs = nn.ModuleList([conv2d(w.transpose(1, 2).reshape(w.shape[0], -1, kh, kw), b)])
        elif self.temporal == "concat":  # channel c * kt + k (taps interleaved, so groups stay contiguous)
            self.convs = nn.ModuleList([conv2d(w.reshape(w.shape[0], -1, kh, kw), b)])
        else:
            self.convs = nn.ModuleList([conv2d(w[:, :, k], b if k == 0 else None) for k in range(kt)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spad is not None:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self.spad, mode=mode)
        if self.kt == 1 and self.st == 1 and self.pt == (0, 0):
            return self.convs[0](x)
        x = _tpad(x, *self.pt, mode=self.padding_mode)
        t_out = (x.shape[0] - self.dt * (self.kt - 1) - 1) // self.st + 1
        taps = _taps(x, self.kt, self.dt, self.st, t_out)
        if self.temporal == "concat" and self.convs[0].groups == 1:
            return self.convs[0](torch.cat(taps, dim=1))  # (T_out, kt * C_in, H, W)
        if self.temporal == "concat":
            y = torch.stack(taps, dim=2)  # (T_out, C_in, kt, H, W)
            return self.convs[0](y.reshape(y.shape[0], -1, y.shape[3], y.shape[4]))
        return _sum([conv(tap) for conv, tap in zip(self.convs, taps)])

    def extra_repr(self) -> str:
        return f"kt={self.kt}, st={self.st}, dt={self.dt}, pt={self.pt}, temporal={self.temporal!r}"


def _batchnorm2d(bn: nn.BatchNorm3d) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    state = bn.state_dict()
    dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    out.load_state_dict(state)
    return out.to(dtype).train(bn.training)


class TemporalAvgPool2d(nn.Module):
    """AvgPool3d on (T, C, H, W): AvgPool2d per frame, then the sum over each
    temporal window times 1 / (PyTorch's temporal divisor for that output frame)."""

    def __init__(self, pool: nn.AvgPool3d) -> None:
        super().__init__()
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = (_triple(pool.kernel_size), _triple(pool.stride or
                                                    pool.kernel_size), _triple(pool.padding))
        self.kt, self.st, self.pt, self.ceil_mode = kt, st, pt, pool.ceil_mode
        self.count_include_pad, self.divisor_override = pool.count_include_pad, pool.divisor_override
        self.spatial = nn.AvgPool2d((kh, kw), (sh, sw), (ph, pw), pool.ceil_mode, pool.count_include_pad,
                                    1 if pool.divisor_override else None)
        self.identity_hw = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)

    def _factors(self, t: int, t_out: int) -> list[float]:
        out = []
        for i in range(t_out):
            start = i * self.st - self.pt
            end = min(start + self.kt, t + self.pt)
            size = end - start
            valid = min(end, t) - max(start, 0)
            d = self.divisor_override or (size if self.count_include_pad else valid)
            out.append(1.0 / d)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        t_out = _pool_out(t, self.kt, self.st, self.pt, 1, self.ceil_mode)
        z = x if self.identity_hw and not self.divisor_override else self.spatial(x)
        if self.kt == 1 and self.st == 1 and self.pt == 0 and not self.divisor_override:
            return z
        right = max(0, (t_out - 1) * self.st + self.kt - t - self.pt)
        z = _tpad(z, self.pt, right)
        factors = self._factors(t, t_out)
        if t_out == 1:
            y = z[: self.kt].sum(dim=0, keepdim=True)
        else:
            y = _sum(_taps(z, self.kt, 1, self.st, t_out))
        if len(set(factors)) == 1:
            return y * factors[0] if factors[0] != 1.0 else y
        return y * torch.tensor(factors, dtype=y.dtype).reshape(-1, 1, 1, 1)


class TemporalMaxPool2d(nn.Module):
    """MaxPool3d on (T, C, H, W): MaxPool2d per frame, then the max over each
    temporal window (frames padded with -inf)."""

    def __init__(self, pool: nn.MaxPool3d) -> None:
        super().__init__()
        (kt, kh, kw), (st, sh, sw) = _triple(pool.kernel_size), _triple(pool.stride or pool.kernel_size)
        (pt, ph, pw), (dt, dh, dw) = _triple(pool.padding), _triple(pool.dilation)
        self.kt, self.st, self.pt, self.dt, self.ceil_mode = kt, st, pt, dt, pool.ceil_mode
        self.spatial = nn.MaxPool2d((kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode=pool.ceil_mode)
        self.identity_hw = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        t_out = _pool_out(t, self.kt, self.st, self.pt, self.dt, self.ceil_mode)
        z = x if self.identity_hw else self.spatial(x)
        if self.kt == 1 and self.st == 1 and self.pt == 0:
            return z
        right = max(0, (t_out - 1) * self.st + self.dt * (self.kt - 1) + 1 - t - self.pt)
        z = _tpad(z, self.pt, right, value=-math.inf)
        if t_out == 1 and self.dt == 1:
            return z[: self.kt].amax(dim=0, keepdim=True)
        taps = _taps(z, self.kt, self.dt, self.st, t_out)
        y = taps[0]
        for tap in taps[1:]:
            y = torch.maximum(y, tap)
        return y


class TemporalAdaptivePool2d(nn.Module):
    """AdaptiveAvgPool3d / AdaptiveMaxPool3d on (T, C, H, W): the 2D adaptive pool
    per frame, then mean / max over PyTorch's adaptive temporal bins."""

    def __init__(self, pool: nn.AdaptiveAvgPool3d | nn.AdaptiveMaxPool3d) -> None:
        super().__init__()
        ot, oh, ow = _triple(pool.output_size)
        self.ot, self.is_max = ot, isinstance(pool, nn.AdaptiveMaxPool3d)
        self.spatial = (nn.AdaptiveMaxPool2d if self.is_max else nn.AdaptiveAvgPool2d)((oh, ow))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        z = self.spatial(x)
        ot = t if self.ot is None else self.ot
        if ot == t:
            return z
        reduce: Callable[..., torch.Tensor] = torch.amax if self.is_max else torch.mean
        bins = [(i * t // ot, -(-(i + 1) * t // ot)) for i in range(ot)]
        return torch.cat([reduce(z[a:b], dim=0, keepdim=True) for a, b in bins], dim=0)


def lower_module(m: nn.Module, temporal: str) -> nn.Module | None:
    """The 2D replacement of a 3D module (works on (T, C, H, W)), None when ``m`` is not 3D."""
    if isinstance(m, nn.Conv3d):
        return TemporalConv2d(m, temporal)
    if isinstance(m, nn.BatchNorm3d):
        return _batchnorm2d(m)
    if isinstance(m, nn.AvgPool3d):
        return TemporalAvgPool2d(m)
    if isinstance(m, nn.MaxPool3d) and not m.return_indices:
        return TemporalMaxPool2d(m)
    if isinstance(m, (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)) and not getattr(m, "return_indices", False):
        return TemporalAdaptivePool2d(m)
    return None


MODULES_3D = (nn.Conv3d, nn.BatchNorm3d, nn.AvgPool3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)
