"""Exact Conv3d -> Conv2d lowering of a torch model, for runtimes without 3D
operators (LiteRT/XNNPACK, FPGA compilers).

``to_2d(model, frames)`` returns a module with the same input (1, 3, T, H, W) and
the same output as ``model``, in which no 3D operator is left: the clip is
permuted once at the entry into a (T, C, H, W) tensor (frames in the batch axis,
batch 1) and stays in that layout through the network:

* ``nn.Conv3d`` (any kernel, stride, padding, dilation, groups, padding mode) ->
  :class:`TemporalConv2d`: the temporal padding is a ``pad`` along dim 0, each
  temporal tap ``k`` a strided slice of frames, and the output either the sum of
  ``kt`` Conv2d (``temporal="sum"``) or one Conv2d over the ``kt`` slices stacked
  into channels (``temporal="concat"``);
* ``nn.BatchNorm3d`` -> ``nn.BatchNorm2d`` (same statistics);
* ``nn.AvgPool3d`` / ``nn.MaxPool3d`` / ``nn.AdaptiveAvgPool3d`` /
  ``nn.AdaptiveMaxPool3d`` -> a 2D pool per frame, then a sum (with PyTorch's
  divisors) or max over the temporal window.

Everything else keeps its meaning through a layout pass over the ``torch.fx``
graph: a value is either *plain* (the model's own layout) or *frames-first*
(logical (1, C, T, H, W) held as (T, C, H, W)).  Elementwise ops, ``cat`` and
reductions with a ``dim`` (e.g. the squeeze-excitation mean over (2, 3, 4), the
head's mean over (T, H, W)) run frames-first with their dims remapped; any other
op gets its frames-first inputs permuted back (``x.permute(1, 0, 2, 3)[None]``),
so the result is exact for any model fx can trace, and fast where the model is
made of convs, norms, pools, activations and reductions.  Shape queries
(``x.shape``, ``x.size()``) become constants (the lowered model is static, like
every exported one).  No per-family hook is needed for edgevid's X3D nor for
PyTorchVideo's ``create_x3d`` (whose head permutes around its Linear: that op
runs on the permuted-back tensor, 1 x 1 x 1 spatially there, so it costs nothing).

Models with no 3D module (Ghost, 2D ConvNet: already 2D inside) are returned
unchanged.  Batch 1 only (a deployment clip); in-place ops work but are not a
fast path.  :func:`fold_batchnorm` then folds the BatchNorm2d into the convs.

``temporal`` measured on LiteRT/XNNPACK fp32, 2 threads, shared 2-core machine
(one process, rotating order): X3D-XS 4x160 (depthwise 3x3x3) "sum" 167-185 ms
median vs "concat" 460-570 ms (its grouped conv with 3 inputs per group is no
depthwise kernel, and the interleave costs Transposes); a dense 4-layer 3x3x3
net at 8x112: "concat" 0.94x the median of "sum".  "sum" is the default.
"""
from __future__ import annotations

import copy
import logging
import math
import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

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


def _lower_module(m: nn.Module, temporal: str) -> nn.Module | None:
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


_3D_TYPES = (nn.Conv3d, nn.BatchNorm3d, nn.AvgPool3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)

# ----------------------------------------------------------------------------- layout pass

# Ops that act elementwise (with broadcasting) and so mean the same in any layout.
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.Tanh, nn.GELU,
                        nn.LeakyReLU, nn.ELU, nn.Mish, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout3d)
_ELEMENTWISE_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.truediv, operator.neg,
                          torch.add, torch.mul, torch.sub, torch.div, torch.sigmoid, torch.relu, torch.tanh,
                          torch.clamp, torch.exp, torch.neg, torch.maximum, torch.minimum,
                          F.relu, F.relu6, F.silu, F.sigmoid, F.hardswish, F.hardsigmoid, F.gelu, F.leaky_relu,
                          F.hardtanh, F.dropout, F.elu, F.mish}
_ELEMENTWISE_METHODS = {"add", "mul", "sub", "div", "sigmoid", "relu", "tanh", "clamp", "exp", "neg",
                        "add_", "mul_", "sub_", "div_", "sigmoid_", "relu_", "clamp_", "contiguous"}
_REDUCE_FUNCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}

# logical (B, C, T, H, W) dim -> physical (T, C, H, W) dim (B is 1 and shares dim 0 with T)
_PHYS = {0: 0, 1: 1, 2: 0, 3: 2, 4: 3}
FRAMES_FIRST, PLAIN = "frames_first", "plain"


def to_frames_first(x: torch.Tensor) -> torch.Tensor:
    """(1, C, T, H, W) -> (T, C, H, W)."""
    return x[0].permute(1, 0, 2, 3)


def from_frames_first(x: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> (1, C, T, H, W)."""
    return x.permute(1, 0, 2, 3).unsqueeze(0)


class _Recorder(fx.Interpreter):
    """Runs the graph once; keeps each tensor's shape and each non-tensor value.

    With ``meta`` the run computes shapes only (parameters swapped for meta tensors
    by ``functional_call``): seconds saved on big 3D convs.
    """

    def __init__(self, gm: fx.GraphModule, meta: bool) -> None:
        super().__init__(gm)
        self.meta = meta
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}
        self.values: dict[fx.Node, Any] = {}

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        if not self.meta:
            return super().call_module(target, args, kwargs)
        mod = self.fetch_attr(target)
        if isinstance(mod, (nn.modules.batchnorm._BatchNorm, *_ELEMENTWISE_MODULES)) and len(args) == 1:
            return args[0]  # shape-preserving (meta batch_norm would import torch._dynamo)
        state = {k: torch.empty_like(v, device="meta")
                 for k, v in [*mod.named_parameters(), *mod.named_buffers()]}
        return torch.func.functional_call(mod, state, args, kwargs)

    def fetch_attr(self, target: str) -> Any:
        out = super().fetch_attr(target)
        return torch.empty_like(out, device="meta") if self.meta and isinstance(out, torch.Tensor) else out

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
        elif _is_literal(out):
            self.values[n] = out
        return out


def _is_literal(v: Any) -> bool:
    if isinstance(v, (bool, int, float, str, type(None), torch.dtype, torch.device)):
        return True
    if isinstance(v, (tuple, list)):  # torch.Size included
        return all(_is_literal(x) for x in v)
    return False


class _Lowering:
    """Copies an fx graph into a new one, tracking each value's layout."""

    def __init__(self, gm: fx.GraphModule, rec: _Recorder, temporal: str) -> None:
        self.gm, self.rec, self.temporal = gm, rec, temporal
        self.graph = fx.Graph()
        self.env: dict[fx.Node, dict[str, Any]] = {}  # old node -> {layout: new node or literal}
        self.modules: dict[str, Any] = {}  # call_module / get_attr targets of the new graph
        self.lowered: dict[str, nn.Module] = {}
        self.fallbacks: list[str] = []

    # --- values
    def is_5d(self, n: Any) -> bool:
        shape = self.rec.shapes.get(n) if isinstance(n, fx.Node) else None
        return shape is not None and len(shape) == 5 and shape[0] == 1

    def get(self, n: fx.Node, layout: str) -> Any:
        have = self.env[n]
        if layout in have:
            return have[layout]
        if layout == FRAMES_FIRST:
            have[layout] = self.graph.call_function(to_frames_first, (have[PLAIN],))
        else:
            have[layout] = self.graph.call_function(from_frames_first, (have[FRAMES_FIRST],))
        return have[layout]

    def plain_args(self, args: Any) -> Any:
        return fx.node.map_arg(args, lambda n: self.get(n, PLAIN))

    def ff_args(self, args: Any) -> Any:
        return fx.node.map_arg(args, lambda n: self.get(n, FRAMES_FIRST) if self.is_5d(n) else self.get(n, PLAIN))

    def tensor_nodes(self, args: Any) -> list[fx.Node]:
        out: list[fx.Node] = []
        fx.node.map_arg(args, lambda n: out.append(n) or n)  # type: ignore[func-returns-value]
        return [n for n in out if n in self.rec.shapes]

    def prefers_ff(self, n: fx.Node) -> bool:
        return n in self.env and FRAMES_FIRST in self.env[n]

    # --- the pass
    def run(self) -> fx.Graph:
        for node in self.gm.graph.nodes:
            if node in self.rec.values and node.op not in ("placeholder", "output"):
                self.env[node] = {PLAIN: self.rec.values[node], FRAMES_FIRST: self.rec.values[node]}
                continue
            getattr(self, "_" + node.op)(node)
        return self.graph

    def _placeholder(self, node: fx.Node) -> None:
        self.env[node] = {PLAIN: self.graph.node_copy(node)}

    def _get_attr(self, node: fx.Node) -> None:
        self.modules[node.target] = copy.deepcopy(_fetch(self.gm, node.target))
        self.env[node] = {PLAIN: self.graph.get_attr(node.target)}

    def _output(self, node: fx.Node) -> None:
        self.graph.output(self.plain_args(node.args[0]))

    def _call_module(self, node: fx.Node) -> None:
        mod = self.gm.get_submodule(node.target)
        x = node.args[0] if node.args else None
        if isinstance(mod, _3D_TYPES) and self.is_5d(x) and len(node.args) == 1 and not node.kwargs:
            new = _lower_module(mod, self.temporal)
            if new is not None:
                self.lowered[node.target] = new
                self.modules[node.target] = new
                self.env[node] = {FRAMES_FIRST: self.graph.call_module(node.target, (self.get(x, FRAMES_FIRST),))}
                return
        self.modules[node.target] = copy.deepcopy(mod)
        if isinstance(mod, _ELEMENTWISE_MODULES) and self.prefers_ff(x) and len(node.args) == 1:
            self.env[node] = {FRAMES_FIRST: self.graph.call_module(node.target, (self.get(x, FRAMES_FIRST),))}
            return
        self._copy(node)

    def _call_function(self, node: fx.Node) -> None:
        if node.target in _ELEMENTWISE_FUNCTIONS and self._elementwise(node):
            return
        if node.target in _REDUCE_FUNCTIONS and self._reduce(node, _REDUCE_FUNCTIONS[node.target]):
            return
        if node.target is torch.cat and self._cat(node):
            return
        self._copy(node)

    def _call_method(self, node: fx.Node) -> None:
        if node.target in _ELEMENTWISE_METHODS and self._elementwise(node):
            return
        if node.target in _REDUCE_METHODS and self._reduce(node, node.target):
            return
        self._copy(node)

    def _copy(self, node: fx.Node) -> None:
        """Any other op: on plain inputs, exactly as in the model."""
        if any(self.prefers_ff(n) and PLAIN not in self.env[n] for n in self.tensor_nodes((node.args, node.kwargs))):
            self.fallbacks.append(f"{node.op} {getattr(node.target, '__name__', node.target)} ({node.name})")
        new = self.graph.node_copy(node, lambda n: self.get(n, PLAIN))
        self.env[node] = {PLAIN: new}
        self._invalidate(node, PLAIN)

    def _invalidate(self, node: fx.Node, layout: str) -> None:
        """After an in-place op, other layouts of its mutated input are stale."""
        if isinstance(node.target, str) and node.target.endswith("_") and node.args:
            first = node.args[0]
            if isinstance(first, fx.Node) and first in self.env:
                self.env[first] = {layout: self.env[node][layout]}

    def _elementwise(self, node: fx.Node) -> bool:
        tensors = self.tensor_nodes((node.args, node.kwargs))
        if not any(self.prefers_ff(n) for n in tensors) or not self.is_5d(node):
            return False
        for n in tensors:  # every tensor operand must broadcast the same way frames-first
            if not (self.is_5d(n) or math.prod(self.rec.shapes[n]) == 1 and len(self.rec.shapes[n]) <= 1):
                return False
        args, kwargs = self.ff_args(node.args), self.ff_args(node.kwargs)
        self.env[node] = {FRAMES_FIRST: self.graph.create_node(node.op, node.target, args, kwargs)}
        self._invalidate(node, FRAMES_FIRST)
        return True

    def _reduce(self, node: fx.Node, op: str) -> bool:
        x = node.args[0]
        if not (isinstance(x, fx.Node) and self.prefers_ff(x) and self.is_5d(x)):
            return False
        rest = dict(zip(("dim", "keepdim"), node.args[1:]))
        rest.update(node.kwargs)
        if set(rest) - {"dim", "keepdim"}:
            return False
        dims = rest.get("dim")
        keepdim = bool(rest.get("keepdim", False))
        if dims is None:
            dims = (0, 1, 2, 3, 4)
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if not all(isinstance(d, int) for d in dims):
            return False
        dims = tuple(sorted({d % 5 for d in dims}))
        phys = tuple(sorted({_PHYS[d] for d in dims if d != 0}))  # B is 1: reducing it changes nothing
        y = self.get(x, FRAMES_FIRST)
        if phys:
            y = self.graph.call_function(getattr(torch, op), (y,), {"dim": phys, "keepdim": True})
        if keepdim:
            self.env[node] = {FRAMES_FIRST: y}
        else:  # (1, C', T', H', W') with the reduced dims dropped
            y = self.graph.call_function(from_frames_first, (y,))
            self.env[node] = {PLAIN: self.graph.call_function(torch.reshape, (y, self.rec.shapes[node]))}
        return True

    def _cat(self, node: fx.Node) -> bool:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not (isinstance(tensors, (list, tuple)) and isinstance(dim, int) and tensors
                and all(self.is_5d(n) for n in tensors) and any(self.prefers_ff(n) for n in tensors)):
            return False
        if dim % 5 == 0:
            return False
        ff = [self.get(n, FRAMES_FIRST) for n in tensors]
        self.env[node] = {FRAMES_FIRST: self.graph.call_function(torch.cat, (ff,), {"dim": _PHYS[dim % 5]})}
        return True


def _fetch(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- BN folding


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold every eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` or
    :class:`TemporalConv2d` (the conv's only user, the conv called once) into the
    conv's weights and bias, in place; returns ``gm``.  Exact up to float
    rounding (~1e-6); LiteRT then has no Mul/Add pair per BN left to run."""
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_var is None:
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                and calls[src.target] == 1):
            continue
        conv = modules[src.target]
        convs = [conv] if isinstance(conv, nn.Conv2d) else list(conv.convs) if isinstance(conv, TemporalConv2d) else []
        if not convs:
            continue
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
            for c in convs:
                c.weight = nn.Parameter(c.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
            first = convs[0]
            bias = shift if first.bias is None else first.bias * scale + shift
            first.bias = nn.Parameter(bias.to(first.weight.dtype), requires_grad=False)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    log.debug("fold_batchnorm: %d BatchNorm2d folded", folded)
    return gm


# ----------------------------------------------------------------------------- entry point


def has_3d(model: nn.Module) -> bool:
    """True when ``model`` holds a 3D conv, norm or pool module."""
    return any(isinstance(m, _3D_TYPES) for m in model.modules())


def to_2d(model: nn.Module, frames: int, resolution: int | tuple[int, int] | None = None,
          temporal: str = "sum") -> nn.Module:
    """The model with every 3D conv / norm / pool rewritten as 2D ops on a
    (T, C, H, W) tensor; same input (1, 3, frames, resolution, resolution) and
    output (max abs difference ~1e-6 in fp32).

    ``resolution`` (H = W, or (H, W)) defaults to ``model.resolution`` (edgevid's
    X3D has it); the rewrite runs the model once on meta tensors of that input
    shape to learn every shape.  ``temporal``:
    ``"sum"`` (a Conv2d per temporal tap, summed) or ``"concat"`` (one Conv2d over
    the taps stacked into channels).  Models without 3D modules are returned as
    they are.  The result is in eval mode and shares no parameters with ``model``.
    """
    if temporal not in TEMPORAL_MODES:
        raise BadInput(f"temporal mode must be one of {', '.join(TEMPORAL_MODES)}, got {temporal!r}")
    if not has_3d(model):
        return model
    if resolution is None:
        resolution = getattr(model, "resolution", None)
        if not isinstance(resolution, (int, tuple)):
            raise BadInput(f"to_2d: {type(model).__name__} has no 'resolution' attribute; pass resolution=")
    training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx refuses data-dependent control flow
        raise BadInput(f"to_2d: torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: {e})") from None
    finally:
        model.train(training)
    p = next(iter(model.parameters()), None)
    dtype = torch.float32 if p is None else p.dtype
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    shape = (1, 3, frames, h, w)
    try:
        rec = _Recorder(gm, meta=True)
        with torch.no_grad():
            rec.run(torch.zeros(shape, dtype=dtype, device="meta"))
    except (RuntimeError, NotImplementedError, TypeError) as e:  # an op without a meta kernel: run it for real
        log.debug("to_2d: shape run on meta tensors failed (%s); running on CPU", e)
        rec = _Recorder(gm, meta=False)
        with torch.no_grad():
            rec.run(torch.zeros(shape, dtype=dtype))
    lowering = _Lowering(gm, rec, temporal)
    graph = lowering.run()
    out = fx.GraphModule(lowering.modules, graph, class_name=f"{type(model).__name__}2d")
    out.graph.eliminate_dead_code()
    out.delete_all_unused_submodules()
    out.recompile()
    out.lowered = sorted(lowering.lowered)  # type: ignore[assignment]
    if lowering.fallbacks:
        log.debug("to_2d: ops run in the model's own layout: %s", ", ".join(lowering.fallbacks))
    left = [n for n, m in out.named_modules() if isinstance(m, _3D_TYPES)]
    if left:
        raise BadInput(f"to_2d: could not lower {', '.join(left)} (batch > 1 or unsupported options)")
    return out.eval()
