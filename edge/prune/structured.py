"""Structured channel pruning to a FLOPs target (torch-pruning's dependency graph).

    prune_model(model, family, input_shape (B, 3, T, S, S), opts, reference_macs, name) -> PruneResult
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.registry import family_spec
from edge.prune.graph import (CRITERIA, MAX_CHANNEL_RATIO, SEARCH_STEPS, SEARCH_TOL, TOLERANCE, PruneOptions, PruneResult, check_supported,
                              customized_pruners, protected_layers, resync, tp_module)
from edge.flops import complexity
from edge.prune.spec import spec_of

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- pruning

def _prune_once(model: nn.Module, example: torch.Tensor, family: str, opts: PruneOptions,
                channel_ratio: float) -> nn.Module:
    """A pruned deep copy of ``model`` at torch-pruning ``channel_ratio``."""
    tp = tp_module()
    m = copy.deepcopy(model).eval()
    if channel_ratio <= 0:
        return m
    pruner = tp.pruner.MetaPruner(
        m, example, importance=CRITERIA[opts.criterion](), global_pruning=opts.global_,
        pruning_ratio=channel_ratio, max_pruning_ratio=MAX_CHANNEL_RATIO,
        ignored_layers=protected_layers(m, family), round_to=opts.round_to,
        customized_pruners=customized_pruners())
    if family_spec(family).roots_in_definition_order:
        _roots_in_definition_order(pruner, m)
    with torch.no_grad():
        pruner.step()
    resync(m)
    return m


def _roots_in_definition_order(pruner: Any, model: nn.Module) -> None:
    """Make torch-pruning pick each group's root in the order the model defines its
    modules, not in its backward-trace order.

    Why (ghost family): torch-pruning roots a group at the first unvisited conv of
    ``DG.module2node``, which is filled backwards from the output.  In a Ghost
    bottleneck that is the consumer of the ghost module's concat - ``conv_dw`` (stride-2
    blocks) or ``se.conv_expand`` (SE blocks) - whose 2m channels are m tied pairs
    (primary map j and its cheap ghost map j, at concat indices j and m + j).  Ranked
    as 2m free channels, the pruner's chosen indices expand through the depthwise tie to
    more than the ratio allows, and the group is skipped: those bottlenecks (the 9
    stride-2 or SE ones of GhostNet's 16) were never pruned, capping the FLOPs cut near
    36% (ghost_tsm, ghostnet_100 at 64 x 64).  Rooted
    at ``ghost1.primary_conv`` (definition order), the group has the m independent
    channels and every bottleneck prunes."""
    order = {mod: i for i, mod in enumerate(model.modules())}
    dg = pruner.DG
    dg.module2node = dict(sorted(dg.module2node.items(), key=lambda kv: order.get(kv[0], len(order))))


def prune_model(model: nn.Module, family: str, input_shape: tuple[int, ...], opts: PruneOptions,
                reference_macs: int | None = None, name: str | None = None) -> PruneResult:
    """Prune ``model`` (not modified) so its multiply-adds at ``input_shape`` fall by
    ``opts.ratio`` relative to ``reference_macs`` (default: the model's own).

    Searches the channel ratio (secant steps); raises ``BadInput`` when the target cannot be reached
    within ``TOLERANCE`` with the protected layers kept, naming the model (``name``, default its
    class) and the largest cut reachable (every prunable layer at ``MAX_CHANNEL_RATIO``).
    """
    check_supported(model)
    model = model.eval()
    before = complexity(model, input_shape)
    ref = reference_macs or before.macs
    target = opts.ratio
    example = torch.zeros((1,) + tuple(input_shape[1:]))
    if target == 0 or 1 - before.macs / ref >= target:
        m = copy.deepcopy(model)
        return PruneResult(m, before, before, 0.0, spec_of(m, model))

    def cut(p: float) -> tuple[float, nn.Module]:
        try:
            pm = _prune_once(model, example, family, opts, p)
            return 1.0 - complexity(pm, input_shape).macs / ref, pm
        except (RuntimeError, IndexError, ValueError) as e:
            raise BadInput(f"pruning failed at channel ratio {p:.3f}: {str(e).splitlines()[0]}") from None

    # FLOPs cut grows smoothly with the channel ratio (about linearly here): secant steps
    # from (0, 0), each a full prune + count, usually 2-3 of them.
    pts = [(0.0, 0.0)]
    best: tuple[float, float, nn.Module] | None = None
    p = target
    for _ in range(SEARCH_STEPS):
        c, pm = cut(p)
        if best is None or abs(c - target) < abs(best[0] - target):
            best = (c, p, pm)
        if abs(c - target) < SEARCH_TOL:
            break
        pts.append((p, c))
        lo = max((q for q in pts if q[1] < target), key=lambda q: q[1], default=(0.0, 0.0))
        hi = min((q for q in pts if q[1] >= target), key=lambda q: q[1], default=None)
        if hi is None:  # extrapolate from the two highest points
            (p0, c0), (p1, c1) = sorted(pts, key=lambda q: q[1])[-2:]
            p = min(MAX_CHANNEL_RATIO, p1 + (target - c1) * (p1 - p0) / max(c1 - c0, 1e-6))
        else:
            p = lo[0] + (target - lo[1]) * (hi[0] - lo[0]) / max(hi[1] - lo[1], 1e-6)
        if any(abs(p - q[0]) < 1e-4 for q in pts):
            break
    assert best is not None
    c, p, pm = best
    if abs(c - target) > TOLERANCE:
        who = name or type(model).__name__
        if c < target:
            c_max = max([q[1] for q in pts if q[0] >= MAX_CHANNEL_RATIO - 1e-9] or [cut(MAX_CHANNEL_RATIO)[0]])
            raise BadInput(f"{who}: FLOPs cut {target:.2f} unreachable - the max reachable cut is {c_max:.3f} "
                           f"(channel ratio {MAX_CHANNEL_RATIO} on every prunable layer; the {family} layers "
                           f"matching {', '.join(family_spec(family).protected)} keep their channels)")
        raise BadInput(f"{who}: FLOPs cut {target:.2f} unreachable within {TOLERANCE}: the nearest is {c:.3f} "
                       f"(channel ratio {p:.3f}); try --round-to 1 or another ratio")
    _check_runs(pm, example)
    after = complexity(pm, input_shape)
    log.info("pruned %s: channel ratio %.3f, MACs %.3fG -> %.3fG (cut %.3f)", family, p, before.gflops,
             after.gflops, 1 - after.macs / ref)
    return PruneResult(pm, before, after, p, spec_of(pm, model))


def _check_runs(model: nn.Module, example: torch.Tensor) -> None:
    with torch.no_grad():
        out = model(example)
    if not torch.isfinite(out).all():
        raise BadInput("pruned model gives non-finite logits")
