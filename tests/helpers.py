"""Shared test helpers."""
from __future__ import annotations

import torch
import torch.nn as nn


def randomize_bn(model: nn.Module, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics, so
    that zero-initialised residual BNs cannot hide a wrong branch.

    With ``input_shape``, the running statistics are instead estimated from one
    train-mode forward on random clips (cumulative average), which keeps the
    activations of deep nets at a realistic scale (logits of order 1, not 1e3).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        if input_shape is not None:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            model.train()
            model(torch.randn((2,) + tuple(input_shape[1:]), generator=g))
            for m in bns:
                m.momentum = 0.1
    return model.eval()
