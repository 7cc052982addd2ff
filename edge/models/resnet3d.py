"""PyTorchVideo's 3-D ResNet building blocks, shared by the R(2+1)D-50 and SlowFast
families, with PyTorchVideo's module names (``create_bottleneck_block`` /
``create_res_block`` / ``create_res_stage``) so that its state dicts load unchanged.

    Bottleneck(c_in, c_inner, c_out, conv_b, kt)   conv_a (kt,1,1) -> BN -> ReLU -> conv_b -> BN
                                                   -> ReLU -> conv_c 1x1x1 -> BN
    ResBlock(c_in, c_out, branch2, stride)         branch2 + shortcut (a strided 1x1x1 conv + BN
                                                   when channels or stride change), then ReLU
    ResStage(blocks)                               the blocks in order (``res_blocks``)

Shapes: (B, C_in, T, H, W) -> (B, C_out, T / st, H / ss, W / ss) for ``stride`` (st, ss, ss).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_inner: int, c_out: int, conv_b: nn.Module, kt: int = 1) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(c_in, c_inner, (kt, 1, 1), 1, (kt // 2, 0, 0), bias=False)
        self.norm_a = nn.BatchNorm3d(c_inner)
        self.act_a = nn.ReLU()
        self.conv_b = conv_b
        self.norm_b = nn.BatchNorm3d(c_inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(c_inner, c_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, branch2: nn.Module, stride: tuple[int, int, int]) -> None:
        super().__init__()
        shortcut = c_in != c_out or stride != (1, 1, 1)
        self.branch1_conv = nn.Conv3d(c_in, c_out, 1, stride, bias=False) if shortcut else None
        self.branch1_norm = nn.BatchNorm3d(c_out) if shortcut else None
        self.branch2 = branch2
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch2(x)
        if self.branch1_conv is not None:
            x = self.branch1_norm(self.branch1_conv(x))
        return self.activation(x + y)


class ResStage(nn.Module):
    def __init__(self, blocks: list[ResBlock]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x
