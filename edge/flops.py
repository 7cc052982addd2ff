"""Parameters and multiply-adds of one clip, counted by ``torch.utils.flop_counter``.

The X3D paper (and this project) quotes multiply-adds as "FLOPs": the counter's
FLOPs divided by two.  Only convolutions and matrix products are counted, which is
the convention of the published tables (BN, activations and pooling are not).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    """``params`` (count) and ``macs`` (multiply-adds of one forward at ``input_shape``)."""

    params: int
    macs: int
    input_shape: tuple[int, ...]

    @property
    def gflops(self) -> float:
        """Multiply-adds in units of 1e9 (the papers' "GFLOPs")."""
        return self.macs / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of ``model(torch.zeros(input_shape))`` in eval mode, on the model's
    device (a model built under ``torch.device("meta")`` is counted without computing)."""
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def complexity(model: nn.Module, input_shape: tuple[int, ...]) -> Complexity:
    return Complexity(count_params(model), count_macs(model, input_shape), tuple(input_shape))
