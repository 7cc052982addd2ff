"""PyTorchVideo reference models for parity tests.

PyTorchVideo 0.1.5 is installed without its dependencies.  Importing
``pytorchvideo.models.x3d`` needs two things this environment lacks:

* ``torchvision.ops.RoIAlign`` (imported by ``pytorchvideo.models.head``, used only
  by detection heads): a stub ``torchvision`` package provides the name.
* ``fvcore.nn`` runs an ``__init__`` that imports iopath, which needs portalocker
  (not installed).  X3D uses only ``fvcore.nn.squeeze_excitation`` and
  ``fvcore.nn.weight_init``: a stub ``fvcore.nn`` package whose ``__path__`` is the
  real folder lets those submodules load without that ``__init__``.

The stubs are in ``sys.modules`` only while the import runs; whatever was there
before is restored.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from typing import Iterator

import torch
import torch.nn as nn

# Our model name -> (create_x3d depth_factor, default frames, default crop), from
# pytorchvideo/models/hub/x3d.py.
X3D_ARGS: dict[str, tuple[float, int, int]] = {
    "x3d_xs": (2.2, 4, 160),
    "x3d_s": (2.2, 13, 160),
    "x3d_m": (2.2, 16, 224),
    "x3d_l": (5.0, 16, 312),
}


def available() -> bool:
    return importlib.util.find_spec("pytorchvideo") is not None and importlib.util.find_spec("fvcore") is not None


@contextlib.contextmanager
def _stubbed(stubs: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        fvcore = sys.modules.get("fvcore")
        if fvcore is not None and getattr(fvcore, "nn", None) is stubs.get("fvcore.nn"):
            delattr(fvcore, "nn")


def import_x3d() -> types.ModuleType:
    """``pytorchvideo.models.x3d``, imported with the stubs above."""
    return import_models("x3d")


def import_models(name: str) -> types.ModuleType:
    """``pytorchvideo.models.<name>`` (x3d, r2plus1d, slowfast, ...), imported with the stubs above."""
    module = f"pytorchvideo.models.{name}"
    if module in sys.modules:
        return sys.modules[module]
    torchvision = types.ModuleType("torchvision")
    torchvision.__path__ = []  # a package
    ops = types.ModuleType("torchvision.ops")

    class RoIAlign(nn.Module):  # never instantiated by X3D
        pass

    ops.RoIAlign = RoIAlign  # type: ignore[attr-defined]
    torchvision.ops = ops  # type: ignore[attr-defined]
    stubs = {"torchvision": torchvision, "torchvision.ops": ops}
    if "fvcore.nn" not in sys.modules:
        fvcore_dirs = importlib.util.find_spec("fvcore").submodule_search_locations  # type: ignore[union-attr]
        fvcore_nn = types.ModuleType("fvcore.nn")
        fvcore_nn.__path__ = [os.path.join(list(fvcore_dirs)[0], "nn")]  # type: ignore[arg-type]
        stubs["fvcore.nn"] = fvcore_nn
    with _stubbed(stubs):
        return importlib.import_module(module)


def randomize_(model: nn.Module, seed: int, calib: torch.Tensor, run=None) -> nn.Module:
    """Random BN affine parameters, conv biases and classifier; BN running statistics
    measured on ``calib`` (B, 3, T, H, W), any H, W: the pass runs every block up to
    the head's pooling (``blocks[:-1]``, and X3D's ``blocks[-1].pool.pre_conv/pre_norm``),
    which holds every BN of X3D and R(2+1)D.

    PyTorchVideo initialises the last BN of every residual branch to zero (the
    branch then contributes nothing), every bias to zero and the classifier to
    std 0.01.  Random values make every weight count in a comparison.  Running
    statistics measured on real activations (rather than drawn at random) keep
    every layer's output of order one and dependent on the input, so logits of
    different clips differ by order one.
    """
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=g, dtype=t.dtype) * (hi - lo) + lo

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(uniform(m.weight, 0.5, 1.5))
                m.bias.copy_(uniform(m.bias, -0.2, 0.2))
            elif isinstance(m, nn.Linear):
                bound = m.in_features ** -0.5
                m.weight.copy_(uniform(m.weight, -bound, bound))
                m.bias.copy_(uniform(m.bias, -0.2, 0.2))
            elif isinstance(m, nn.Conv3d) and m.bias is not None:
                m.bias.copy_(uniform(m.bias, -0.2, 0.2))
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
        model.train()
        if run is not None:  # a model whose blocks take more than a tensor (SlowFast's pathway lists)
            run(model, calib)
        else:
            x = calib
            for block in model.blocks[:-1]:
                x = block(x)
            pool = model.blocks[-1].pool
            if hasattr(pool, "pre_conv"):  # X3D's head holds a conv + BN before its pooling
                pool.pre_norm(pool.pre_conv(x))
        for m in norms:
            m.momentum = 0.1
    return model.eval()


def pytorchvideo_x3d(name: str, num_classes: int = 400, frames: int | None = None, crop: int | None = None,
                     seed: int = 0) -> nn.Module:
    """PyTorchVideo ``create_x3d`` for our ``name``, logits out (no head softmax),
    randomised (see ``randomize_``; BN statistics from two 64 x 64 ``clip``s), in eval mode."""
    depth_factor, default_frames, default_crop = X3D_ARGS[name]
    x3d = import_x3d()
    torch.manual_seed(seed)
    model = x3d.create_x3d(input_clip_length=frames or default_frames, input_crop_size=crop or default_crop,
                           model_num_class=num_classes, depth_factor=depth_factor, head_activation=None)
    return randomize_(model, seed, clip(2, frames or default_frames, 64, seed=seed + 1000))


def pytorchvideo_r2plus1d(num_classes: int = 400, frames: int = 16, crop: int = 224, seed: int = 0) -> nn.Module:
    """PyTorchVideo ``create_r2plus1d`` (depth 50) at ``frames`` x ``crop`` (the head's window
    (frames/4, crop/32, crop/32) where that is under its (4, 7, 7)), logits out, randomised
    (BN statistics from two ``frames`` x 64 x 64 clips)."""
    r2 = import_models("r2plus1d")
    torch.manual_seed(seed)
    t, s = -(-frames // 4), -(-crop // 32)
    model = r2.create_r2plus1d(model_num_class=num_classes, head_activation=None, dropout_rate=0.0,
                               head_pool_kernel_size=(min(4, t), min(7, s), min(7, s)))
    return randomize_(model, seed, clip(2, frames, 64, seed=seed + 1000))


def pytorchvideo_slowfast(num_classes: int = 400, frames: int = 32, crop: int = 224, seed: int = 0) -> nn.Module:
    """PyTorchVideo ``create_slowfast`` as SlowFast-R50 4x16 (fusion kernel (5,1,1), stride 8) at
    ``frames`` x ``crop``, taking ``[x[:, :, ::8], x]``; logits out, randomised, BN statistics from
    one train-mode pass over two clips."""
    sf = import_models("slowfast")
    torch.manual_seed(seed)
    t_slow, s = -(-frames // 8), -(-crop // 32)
    model = sf.create_slowfast(model_num_class=num_classes, slowfast_fusion_conv_kernel_size=(5, 1, 1),
                               slowfast_fusion_conv_stride=(8, 1, 1), dropout_rate=0.0, head_activation=None,
                               head_pool_kernel_sizes=((t_slow, min(7, s), min(7, s)), (frames, min(7, s), min(7, s))))
    x = clip(2, frames, crop, seed=seed + 1000)
    return randomize_(model, seed, x, run=lambda m, c: m([c[:, :, ::8], c]))


def clip(batch: int, frames: int, crop: int, seed: int = 0) -> torch.Tensor:
    """(batch, 3, frames, crop, crop): a smooth random field plus noise, so that clips
    still differ after the network's global pooling (white noise would not)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, frames, 4, 4, generator=g)
    x = nn.functional.interpolate(coarse, size=(frames, crop, crop), mode="trilinear", align_corners=False)
    return x + 0.1 * torch.randn(x.shape, generator=g)
