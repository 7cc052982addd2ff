"""What torch-pruning must know about our networks: options and results, the layers each
family keeps whole (``PROTECTED``), importance criteria, custom pruners for our blocks
(temporal shift, Ghost modules) and ``resync`` of the attributes they derive from shapes.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.flops import Complexity

log = logging.getLogger(__name__)

TOLERANCE = 0.05  # |achieved FLOPs cut - target| allowed
SEARCH_STEPS = 6
SEARCH_TOL = 0.01
MAX_CHANNEL_RATIO = 0.95

# Module-path patterns (re.search) whose output channels are never pruned, per family.
PROTECTED: dict[str, tuple[str, ...]] = {
    # stem (conv_xy, conv_t), the residual stream (conv_c, branch1), the classifier
    "x3d": (r"^blocks\.0\.", r"\.conv_c$", r"\.branch1_conv$", r"\.proj$"),
    # stem, the ghost module that ends a block (residual stream, shift input), shortcuts,
    # the stage-9 conv, the classifier; ghost1 (expansion), SE and head are pruned
    "ghost": (r"^conv_stem$", r"\.ghost2\.", r"\.shortcut\.", r"^blocks\.9\.", r"^classifier$"),
    # stem, everything on the stage stream (split by raw_chs/cheap_chs), the classifier;
    # the inner width of every RegBottleneck (conv1 -> grouped conv2 -> conv3) is pruned
    "gghost": (r"^stem\.", r"\.conv3$", r"\.downsample\.", r"\.cheap\.", r"\.merge\.4$", r"^fc$"),
    # stem, every block.project (shift input / residual stream), the classifier
    "convnet2d": (r"^stem\.", r"\.project$", r"^fc$"),
}

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


# Families whose pruning groups are rooted in definition order (see _roots_in_definition_order).
ROOTS_IN_DEFINITION_ORDER = ("ghost",)

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
    """Recompute attributes our modules derive from channel counts, after torch-pruning
    shrank their convs (it updates only torch's own modules).

    GhostModule: ``out_chs`` = primary + cheap channels (torch-pruning removes a
    primary channel together with its depthwise ghost map, so the concat stays even).
    GhostNet / GGhostNet: ``num_features`` = the classifier's input features (the
    forward reshapes to it).
    """
    from edge.models.ghost import GGhostNet, GhostModule, GhostNet

    for m in model.modules():
        if isinstance(m, GhostModule):
            m.out_chs = m.primary_conv[0].out_channels + m.cheap_operation[0].out_channels
        elif isinstance(m, GhostNet):
            m.num_features = m.classifier.in_features
        elif isinstance(m, GGhostNet):
            m.num_features = m.fc.in_features


def customized_pruners() -> dict[type, Any]:
    """Our channel-wise, weightless modules that torch-pruning should treat as leaves
    (not trace): the ghost nets' TemporalShift, whose per-fold slices and
    concatenations blow up its graph (7 GB and minutes on ghost_tsm).  Its input is
    protected, so the pruner only ever passes through it."""
    from edge.models.ghost import TemporalShift

    tp = tp_module()

    class PassThrough(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: nn.Module) -> None:
            return None

        def get_in_channels(self, layer: nn.Module) -> None:
            return None

    return {TemporalShift: PassThrough()}


def protected_layers(model: nn.Module, family: str) -> list[nn.Module]:
    """Modules whose output channels stay (see ``PROTECTED``)."""
    if family not in PROTECTED:
        raise BadInput(f"model family {family!r}: the pruner has no protected-layer list for it "
                       f"(known: {', '.join(PROTECTED)})")
    pats = [re.compile(p) for p in PROTECTED[family]]
    return [m for name, m in model.named_modules()
            if isinstance(m, _PRUNABLE) and any(p.search(name) for p in pats)]


def check_supported(model: nn.Module) -> None:
    """Refuse models holding layer types the pruner does not know (named)."""
    from edge.models import common, convnet2d, ghost, x3d  # noqa: F401  (our own blocks are handled)

    ours = ("edge.models.",)
    for name, m in model.named_modules():
        if isinstance(m, _HANDLED) or type(m).__module__.startswith(ours) or name == "":
            continue
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention, nn.ConvTranspose1d, nn.ConvTranspose2d,
                          nn.ConvTranspose3d, nn.GroupNorm, nn.LayerNorm)) or any(
                True for _ in m.parameters(recurse=False)):
            raise BadInput(f"layer {name!r} ({type(m).__name__}): the pruner cannot handle this layer type")
