"""What torch-pruning must know about our networks: options and results, the layers each
family keeps whole (its ``FamilySpec.protected``), importance criteria, custom pruners for our
blocks (``FamilySpec.pass_through``) and ``resync`` of what they derive from channel counts.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models.registry import all_families, family_spec
from edge.flops import Complexity

log = logging.getLogger(__name__)

TOLERANCE = 0.05  # |achieved FLOPs cut - target| allowed
SEARCH_STEPS = 6
SEARCH_TOL = 0.01
MAX_CHANNEL_RATIO = 0.95

def _prefix_importance() -> Any:
    """Keep the lowest-index channels: the score falls with the channel index.  For
    slimmable (MutualNet) checkpoints, whose width-w sub-network is the first channels of
    every layer, this keeps the channels training ranked first."""
    tp = tp_module()

    class PrefixImportance(tp.importance.Importance):
        @torch.no_grad()
        def __call__(self, group: Any, **_: Any) -> torch.Tensor:
            _, idxs = group[0]
            return -torch.as_tensor(list(idxs), dtype=torch.float32)

    return PrefixImportance()


CRITERIA: dict[str, Callable[[], Any]] = {
    "l1": lambda: tp_module().importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp_module().importance.GroupMagnitudeImportance(p=2),
    "bn": lambda: tp_module().importance.BNScaleImportance(),
    "prefix": _prefix_importance,
}

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm)
_HANDLED = _PRUNABLE + (nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.Identity, nn.Dropout,
                        nn.Sequential, nn.ModuleList, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                        nn.AdaptiveAvgPool3d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool2d, nn.MaxPool3d, nn.Softmax,
                        nn.Flatten)


def tp_module() -> Any:
    import torch_pruning

    return torch_pruning


@dataclass(frozen=True)
class PruneOptions:
    """How to prune: FLOPs-cut target ``ratio`` in [0, 1), importance criterion,
    global (one ranking over all layers) or uniform ratio, channel rounding."""

    ratio: float
    criterion: str = "l1"
    global_: bool = False
    round_to: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.ratio) < 1.0):
            raise BadInput(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.criterion not in CRITERIA:
            raise BadInput(f"--criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if self.round_to is not None and self.round_to < 1:
            raise BadInput(f"--round-to must be a positive integer, got {self.round_to}")


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    before: Complexity
    after: Complexity
    channel_ratio: float
    spec: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flops_cut(self) -> float:
        return 1.0 - self.after.macs / self.before.macs


# ----------------------------------------------------------------------------- graph fixes

def resync(model: nn.Module) -> None:
    """Recompute attributes our modules derive from channel counts, after torch-pruning shrank
    their convs (it updates only torch's own modules): every family's ``FamilySpec.resync``."""
    for spec in all_families():
        if spec.resync is not None:
            spec.resync(model)


def customized_pruners() -> dict[type, Any]:
    """Our channel-wise, weightless modules that torch-pruning should treat as leaves (not
    trace): every family's ``FamilySpec.pass_through`` (the ghost nets' TemporalShift, whose
    per-fold slices and concatenations blow up its graph).  Their inputs are protected, so the
    pruner only ever passes through them."""
    tp = tp_module()

    class PassThrough(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: nn.Module) -> None:
            return None

        def get_in_channels(self, layer: nn.Module) -> None:
            return None

    return {t: PassThrough() for spec in all_families() for t in spec.pass_through}


def protected_layers(model: nn.Module, family: str) -> list[nn.Module]:
    """Modules whose output channels stay (the family's ``FamilySpec.protected``)."""
    pats = [re.compile(p) for p in family_spec(family).protected]
    return [m for name, m in model.named_modules()
            if isinstance(m, _PRUNABLE) and any(p.search(name) for p in pats)]


def check_supported(model: nn.Module) -> None:
    """Refuse models holding layer types the pruner does not know (named)."""
    all_families()  # our own blocks are handled: every family module imported

    ours = ("edge.models.",)
    for name, m in model.named_modules():
        if isinstance(m, _HANDLED) or type(m).__module__.startswith(ours) or name == "":
            continue
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention, nn.ConvTranspose1d, nn.ConvTranspose2d,
                          nn.ConvTranspose3d, nn.GroupNorm, nn.LayerNorm)) or any(
                True for _ in m.parameters(recurse=False)):
            raise BadInput(f"layer {name!r} ({type(m).__name__}): the pruner cannot handle this layer type")
