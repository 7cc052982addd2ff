"""Shared test helpers."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

# ONNX Runtime vs PyTorch, both float32: 1e-4 per unit of the largest logit (>= 1).  X3D-L (depth
# factor 5, 2.3x the blocks of the others) accumulates float32 rounding of the BN folded into its
# convs over its depth: 2.6e-4 measured on logits up to 1.4 (tests/test_models.py), and up to
# 1.5e-4 per unit of logit after pruning 30-50% (8 seeded draws, tests/test_prune.py).  R(2+1)D-50
# sums over up to 4608 inputs per output (512 x 3 x 3 and 2048-wide 1x1x1 convs): 1.0e-4 per unit of a
# logit of 5 unpruned, 1.4e-4 after pruning 30%.  The bound for new models is 1e-3 relative.
ONNX_TOL: dict[str, float] = {"x3d_l": 5e-4, "r2plus1d_r50": 3e-4}


def onnx_parity_bound(name: str, ref: np.ndarray) -> float:
    """Largest |ONNX Runtime - PyTorch| allowed on float32 logits ``ref`` of model ``name``:
    float32 rounding error grows with the size of the values, so the bound scales with them."""
    return ONNX_TOL.get(name, 1e-4) * max(1.0, float(np.abs(ref).max()))


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


# X3D-XS, -S and -M are one network (depth factor 2.2, the same widths); only their default
# input differs.  Tests that force a small input (4 x 64, 3 x 32) would build the same model
# three times, so they run X3D-XS for all three.  tests/test_models.py checks the claim.
SAME_NET_AT_A_FIXED_INPUT = {"x3d_s": "x3d_xs", "x3d_m": "x3d_xs"}


def distinct_models() -> list[str]:
    """Registered models that build different networks at the same input shape."""
    from edge.models import MODELS

    return [name for name in MODELS if name not in SAME_NET_AT_A_FIXED_INPUT]
