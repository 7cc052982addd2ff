"""The model zoo registry: ``MODELS`` (every model's builder and default input) and
``FAMILIES`` (where each family's :class:`~edge.models.family.FamilySpec` lives).

``MODELS`` is a dict literal of pure data so that code which only needs names and
default shapes (``Variant``, the harness, the on-device agent) imports no torch.
Each entry names its builder as ``"module:function"``; ``create_model`` imports the
family module lazily.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edge.core.errors import BadInput
from edge.core.variant import Variant
from edge.models.family import FamilySpec

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model before building it.

    ``frames`` x ``resolution`` is the default single-clip input (the one the
    published GFLOPs refer to); ``num_classes`` the default head size;
    ``published`` the paper's or reference implementation's figures with their
    source and convention ("" for our own designs, which have none).
    """

    name: str
    family: str
    builder: str
    frames: int
    resolution: int
    num_classes: int
    description: str
    published: str = ""

    def build_fn(self) -> Callable[..., "nn.Module"]:
        module, fn = self.builder.split(":")
        return getattr(importlib.import_module(module), fn)


MODELS: dict[str, ModelInfo] = {
    "x3d_xs": ModelInfo("x3d_xs", "x3d", "edge.models.x3d:x3d_xs", 4, 160, 400,
                        "X3D-XS (Feichtenhofer 2020), 3x3x3 depthwise bottlenecks",
                        "X3D paper, K400 table: 3.8M params, 0.60 GMACs at 4x160 (one clip)"),
    "x3d_s": ModelInfo("x3d_s", "x3d", "edge.models.x3d:x3d_s", 13, 160, 400,
                       "X3D-S", "X3D paper, K400 table: 3.8M params, 1.96 GMACs at 13x160 (one clip)"),
    "x3d_m": ModelInfo("x3d_m", "x3d", "edge.models.x3d:x3d_m", 16, 224, 400,
                       "X3D-M", "X3D paper, K400 table: 3.8M params, 4.73 GMACs at 16x224 (one clip)"),
    "x3d_l": ModelInfo("x3d_l", "x3d", "edge.models.x3d:x3d_l", 16, 312, 400,
                       "X3D-L (depth factor 5.0)",
                       "X3D paper, K400 table: 6.2M params, 18.37 GMACs at 16x312 (one clip)"),
    "ghostnet_100": ModelInfo("ghostnet_100", "ghost", "edge.models.ghost:ghostnet_100", 1, 224, 1000,
                              "image GhostNet-1.0x per frame, frames averaged",
                              "GhostNet paper (Han 2020), ImageNet table: 5.2M params, about 0.14 GMACs at 224"),
    "ghost_tsm": ModelInfo("ghost_tsm", "ghost", "edge.models.ghost:ghost_tsm", 8, 160, 400,
                           "GhostNet-1.0x per frame with temporal shift, temporal pooling"),
    "gghost_tsm": ModelInfo("gghost_tsm", "gghost", "edge.models.gghost:gghost_tsm", 8, 160, 400,
                            "G-Ghost stages (cheap-feature concat) per frame with temporal shift"),
    "convnet2d_s": ModelInfo("convnet2d_s", "convnet2d", "edge.models.convnet2d:convnet2d_s", 8, 160, 400,
                             "2D-only ConvNet (standard operators), small"),
    "convnet2d_m": ModelInfo("convnet2d_m", "convnet2d", "edge.models.convnet2d:convnet2d_m", 16, 160, 400,
                             "2D-only ConvNet (standard operators), medium"),
    "r2plus1d_r50": ModelInfo("r2plus1d_r50", "r2plus1d", "edge.models.r2plus1d:r2plus1d_r50", 16, 224, 400,
                              "R(2+1)D-50 (Tran 2018): ResNet-50 bottlenecks with (3,1,1)+(1,3,3) convs",
                              "PyTorchVideo zoo: 28.11M params, 76.45 GFLOPs per view at 16x256 (fvcore)"),
    "r2plus1d_18": ModelInfo("r2plus1d_18", "r2plus1d", "edge.models.r2plus1d:r2plus1d_18", 16, 112, 400,
                             "R(2+1)D-18 (Tran 2018): basic blocks of (1,3,3)+(3,1,1) convs, M_i inner width",
                             "torchvision r2plus1d_18: 31,505,325 params, 40.52 GFLOPs (MACs) at 16x112"),
    "slowfast_r50": ModelInfo("slowfast_r50", "slowfast", "edge.models.slowfast:slowfast_r50", 32, 224, 400,
                              "SlowFast-R50 4x16 (Feichtenhofer 2019): alpha 8, beta 1/8; slow = every 8th frame",
                              "SlowFast paper: 36.1 GFLOPs (MACs) at 32x256, K400 75.6; PyTorchVideo: 34.48M params"),
    "s3d": ModelInfo("s3d", "s3d", "edge.models.s3d:s3d", 64, 224, 400,
                     "S3D (Xie 2018): Inception-v1 with separable (1,k,k)+(k,1,1) 3D convs",
                     "torchvision s3d: 8,320,048 params (400 classes); GFLOPs not confirmed"),
    "s3dg": ModelInfo("s3dg", "s3d", "edge.models.s3d:s3dg", 64, 224, 400,
                      "S3D-G: S3D with feature gating after every Inception branch",
                      "none confirmed (the paper states no parameter count)"),
}


# family -> "module:NAME" of its FamilySpec (the last thing in the family file); imported lazily.
FAMILIES: dict[str, str] = {
    "x3d": "edge.models.x3d:FAMILY",
    "ghost": "edge.models.ghost:GHOST_FAMILY",
    "gghost": "edge.models.gghost:FAMILY",
    "convnet2d": "edge.models.convnet2d:FAMILY",
    "r2plus1d": "edge.models.r2plus1d:FAMILY",
    "s3d": "edge.models.s3d:FAMILY",
    "slowfast": "edge.models.slowfast:FAMILY",
}


def family_spec(family: str) -> FamilySpec:
    """The :class:`FamilySpec` of ``family`` (imports its family module: torch)."""
    try:
        module, name = FAMILIES[family].split(":")
    except KeyError:
        raise BadInput(f"unknown model family {family!r}; known families: {', '.join(FAMILIES)}") from None
    spec = getattr(importlib.import_module(module), name)
    if not isinstance(spec, FamilySpec) or spec.name != family:
        raise BadInput(f"{FAMILIES[family]} is not the FamilySpec of family {family!r}")
    return spec


def all_families() -> list[FamilySpec]:
    """Every registered family's spec (imports every family module: torch)."""
    return [family_spec(f) for f in FAMILIES]


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names list the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise BadInput(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None


def variant(model: str, width: float = 1.0, resolution: int | None = None, frames: int | None = None,
            precision: str = "fp32", prune: float = 0.0) -> Variant:
    """A ``Variant`` of zoo model ``model``; ``resolution``/``frames`` default to its
    published input (e.g. 13 x 160 for X3D-S).  Unknown names list the valid ones."""
    info = model_info(model)
    return Variant(model, width, info.resolution if not resolution else resolution,
                   info.frames if not frames else frames, precision, prune)


def variant_from_tag(tag: str) -> Variant:
    """``Variant.from_tag`` that also checks the model is in the zoo."""
    v = Variant.from_tag(tag)
    model_info(v.model)
    return v


def create_model(variant: "Variant", num_classes: int | None = None) -> "nn.Module":
    """Build the float model for ``variant`` (width, frames, resolution), untrained.

    Input of the returned module: (B, 3, variant.frames, variant.resolution,
    variant.resolution) float32; output (B, num_classes) logits.
    """
    info = model_info(variant.model)
    build = info.build_fn()
    return build(
        num_classes=info.num_classes if num_classes is None else num_classes,
        frames=variant.frames,
        resolution=variant.resolution,
        width=variant.width,
    )
