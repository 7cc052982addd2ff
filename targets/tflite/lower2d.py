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
fast path.  :func:`targets.tflite.fold.fold_batchnorm` then folds the BatchNorm2d into the convs.

API: ``to_2d(model, frames, resolution=None, temporal="sum") -> nn.Module``
(input (1, 3, T, H, W), output as ``model``), ``has_3d(model) -> bool``,
``to_frames_first`` / ``from_frames_first`` ((1, C, T, H, W) <-> (T, C, H, W)).
The 3D -> 2D modules live in :mod:`targets.tflite.temporal`, BN folding in
:mod:`targets.tflite.fold`.
"""
from __future__ import annotations

import copy
import logging
import math
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from edge.core.errors import BadInput
from targets.tflite.temporal import MODULES_3D, TEMPORAL_MODES, lower_module

log = logging.getLogger(__name__)

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
        if isinstance(mod, MODULES_3D) and self.is_5d(x) and len(node.args) == 1 and not node.kwargs:
            new = lower_module(mod, self.temporal)
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



# ----------------------------------------------------------------------------- entry point


def has_3d(model: nn.Module) -> bool:
    """True when ``model`` holds a 3D conv, norm or pool module."""
    return any(isinstance(m, MODULES_3D) for m in model.modules())


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
    left = [n for n, m in out.named_modules() if isinstance(m, MODULES_3D)]
    if left:
        raise BadInput(f"to_2d: could not lower {', '.join(left)} (batch > 1 or unsupported options)")
    return out.eval()
