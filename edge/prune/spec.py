"""A pruned model as data: the changed integer attributes per module (``spec_of``), and the
model rebuilt from ``create_model(variant)`` plus that spec and the state dict's shapes.

    spec_of(pruned, original) -> {module path: {attr: int}}
    rebuild(model, spec, state) -> nn.Module;  load_pruned(path, variant);  load_teacher(path, variant)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- spec / rebuild

def _plain(v: Any) -> bool:
    return isinstance(v, (int, bool)) or (isinstance(v, tuple) and all(isinstance(x, int) for x in v))


def spec_of(pruned: nn.Module, original: nn.Module) -> dict[str, dict[str, Any]]:
    """{module path: {attribute: new value}} for the integer attributes pruning changed."""
    orig = dict(original.named_modules())
    spec: dict[str, dict[str, Any]] = {}
    for name, m in pruned.named_modules():
        o = orig.get(name)
        if o is None:
            continue
        changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(m).items()
                   if not k.startswith("_") and _plain(v) and vars(o).get(k) != v}
        if changed:
            spec[name] = changed
    return spec


def rebuild(model: nn.Module, spec: Mapping[str, Mapping[str, Any]],
            state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """Shrink a freshly built ``model`` in place to ``spec`` and the shapes of ``state``,
    then load ``state`` (strict).  ``where`` names the source in errors."""
    from edge.checkpoint import load_into

    modules = dict(model.named_modules())
    for name, attrs in spec.items():
        if name not in modules:
            raise BadInput(f"{where}: pruned architecture names module {name!r}, not in the model")
        for k, v in attrs.items():
            setattr(modules[name], k, tuple(v) if isinstance(v, list) else v)
    for key, t in state.items():
        path, _, leaf = key.rpartition(".")
        m = modules.get(path)
        if m is None:
            continue  # load_into names it
        if leaf in m._parameters and m._parameters[leaf] is not None and m._parameters[leaf].shape != t.shape:
            m._parameters[leaf] = nn.Parameter(torch.empty(t.shape, dtype=t.dtype))
        elif leaf in m._buffers and m._buffers[leaf] is not None and m._buffers[leaf].shape != t.shape:
            m._buffers[leaf] = torch.empty(t.shape, dtype=t.dtype)
    return load_into(model, state, where)


def load_pruned(path: str | Path, variant: Any) -> nn.Module:
    """The pruned model of checkpoint ``path`` for ``variant`` (its prune ratio must
    match the checkpoint's); works on unpruned checkpoints when ``variant.prune == 0``."""
    from edge.checkpoint import load_checkpoint
    from edge.models import create_model

    ck = load_checkpoint(path)
    if variant.model != ck.variant.model:
        raise BadInput(f"{path}: checkpoint holds {ck.variant.model}, not {variant.model}")
    info = ck.meta.get("prune")
    have = float(info["ratio"]) if info else 0.0
    if abs(have - variant.prune) > 1e-6:
        raise BadInput(f"{path}: checkpoint is pruned at ratio {have}, the variant asks for {variant.prune}")
    if variant.width != ck.variant.width:
        raise BadInput(f"{path}: checkpoint width {ck.variant.width}, the variant asks for {variant.width}")
    model = create_model(variant.with_(prune=0.0), num_classes=ck.num_classes)
    return rebuild(model, info["spec"] if info else {}, ck.state_dict, str(path)).eval()


def load_teacher(path: str | Path, variant: Any) -> nn.Module:
    """The unpruned model of checkpoint ``path`` at ``variant`` (eval mode).

    A slimmable (MutualNet) checkpoint is materialised at the variant's width,
    resolution and frames, with that configuration's BN post-statistics
    (``BadInput`` when the configuration is not in its table); a static one is
    loaded as ``load_pruned`` does."""
    from edge.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if "slim" not in ck.meta:
        return load_pruned(path, variant)
    from edge.models.slim import load_slim, materialize

    slim, _ = load_slim(path, variant.model)
    return materialize(slim, variant.width, variant.resolution, variant.frames).eval()
