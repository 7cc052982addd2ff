"""BatchNorm folding on a lowered (2D) fx graph.

API: ``fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule`` (in place): every
eval-mode ``BatchNorm2d`` right after a ``Conv2d`` or
:class:`targets.tflite.temporal.TemporalConv2d` goes into the conv's weights/bias.
"""
from __future__ import annotations

import logging

import torch
import torch.fx as fx
import torch.nn as nn

from targets.tflite.temporal import TemporalConv2d

log = logging.getLogger(__name__)

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

