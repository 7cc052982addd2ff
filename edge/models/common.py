"""Small pieces shared by the model families."""
from __future__ import annotations

import torch
import torch.nn as nn


def scale_channels(channels: int, width: float, divisor: int = 1) -> int:
    """Channels at width multiplier ``width``: ``channels * width`` rounded to the
    nearest multiple of ``divisor`` (at least ``divisor``).  Exact at width 1.0.

    Every family and the slimmable models use this one rule so that a static model
    built at a width has the same shapes as a slimmable model sliced to it.
    """
    if width == 1.0:
        return channels
    scaled = channels * width
    return max(divisor, int(scaled / divisor + 0.5) * divisor)


class Swish(nn.Module):
    """x * sigmoid(x) (exported as Sigmoid + Mul, legal on every target)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)
