"""Import checkpoints of other projects as edgevid checkpoints (``edgevid convert-ckpt``).

Supported: PyTorchVideo X3D checkpoints (``x3d_s.pyth`` and the like, or any
``create_x3d`` state dict) into ``x3d_xs`` / ``x3d_s`` / ``x3d_m`` / ``x3d_l``, and
R(2+1)D-50 ones (``r2plus1d_r50.pyth``, any ``create_r2plus1d(model_depth=50)`` state
dict) into ``r2plus1d_r50``, whose module names are PyTorchVideo's.
Files are read with ``torch.load(weights_only=True)``: nothing in them runs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch.nn as nn

from edge.checkpoint import as_state_dict, check_state_dict, load_pickle, save_checkpoint
from edge.core.errors import BadInput
from edge.models import MODELS, create_model, model_info
from edge.core.io import sha256_file
from edge.models.registry import variant as zoo_variant

log = logging.getLogger(__name__)

SOURCE_FORMATS: tuple[str, ...] = ("pytorchvideo",)
PYTORCHVIDEO_FAMILIES: tuple[str, ...] = ("x3d", "r2plus1d")

# PyTorchVideo key prefix -> ours.  PyTorchVideo's create_x3d_stem names its spatial
# 1x3x3 conv ``conv_t`` and its temporal 5x1x1 conv ``conv_xy``; edge.models.x3d names
# them for what they do.  Every other key is the same in both.
_PYTORCHVIDEO_RENAMES: dict[str, str] = {
    "blocks.0.conv.conv_t.": "blocks.0.conv.conv_xy.",
    "blocks.0.conv.conv_xy.": "blocks.0.conv.conv_t.",
}
# The classifier, (num_classes, 2048) in both families: its rows give the number of classes.
_PYTORCHVIDEO_PROJ = "blocks.5.proj.weight"


def pytorchvideo_key(key: str) -> str:
    """Our state-dict key for a PyTorchVideo key (``create_x3d``'s stem renamed; the rest as is)."""
    for old, new in _PYTORCHVIDEO_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def pytorchvideo_models() -> tuple[str, ...]:
    """Zoo models a PyTorchVideo checkpoint converts into (the X3D and R(2+1)D families)."""
    return tuple(name for name, info in MODELS.items() if info.family in PYTORCHVIDEO_FAMILIES)


def from_pytorchvideo(state_dict_or_path: Mapping[str, Any] | str | Path, model_name: str) -> tuple[nn.Module, int]:
    """Our ``model_name`` (at its default frames x resolution, width 1.0) with the
    weights of a PyTorchVideo X3D or R(2+1)D-50 checkpoint, in eval mode, and its number of classes.

    ``state_dict_or_path``: a ``.pyth`` path (``{"model_state": state_dict}`` or a bare
    state dict), or such an object already loaded.  Raises ``BadInput`` naming the
    file and, for a weight that does not fit, the first key that does not.
    """
    supported = pytorchvideo_models()
    model_info(model_name)  # unknown names -> BadInput listing the valid ones
    if model_name not in supported:
        raise BadInput(f"PyTorchVideo checkpoints convert only to {', '.join(supported)}; got {model_name!r}")
    if isinstance(state_dict_or_path, (str, Path)):
        where: str | Path = state_dict_or_path
        obj = load_pickle(state_dict_or_path)
    else:
        where, obj = "state dict", state_dict_or_path
    source = as_state_dict(obj, where)
    proj = source.get(_PYTORCHVIDEO_PROJ)
    if proj is None or proj.dim() != 2:
        raise BadInput(f"{where}: no 2-D {_PYTORCHVIDEO_PROJ!r}; not a PyTorchVideo checkpoint of {model_name}")
    num_classes = int(proj.shape[0])
    state = {pytorchvideo_key(k): v for k, v in source.items()}
    model = create_model(zoo_variant(model_name), num_classes=num_classes)
    check_state_dict(model, state, where)
    model.load_state_dict(state, strict=True)
    return model.eval(), num_classes


def convert_checkpoint(source_format: str, src: str | Path, dst: str | Path, model: str) -> dict[str, Any]:
    """Convert ``src`` (a ``source_format`` checkpoint) into an edgevid checkpoint at ``dst``
    for zoo model ``model``.

    Returns ``{"dst", "model", "num_classes", "tensors"}`` (tensors: entries of the
    written state dict).  The checkpoint's meta records the source format, file
    name and sha256.
    """
    if source_format not in SOURCE_FORMATS:
        raise BadInput(f"unknown source format {source_format!r}; supported: {', '.join(SOURCE_FORMATS)}")
    net, num_classes = from_pytorchvideo(src, model)
    meta = {"source_format": source_format, "source_file": Path(src).name, "source_sha256": sha256_file(src)}
    try:
        save_checkpoint(dst, net, zoo_variant(model), num_classes, meta)
    except OSError as e:
        raise BadInput(f"{dst}: cannot write the checkpoint ({e.strerror or e})") from None
    tensors = len(net.state_dict())
    log.info("converted %s (%s) -> %s: %s, %d classes, %d tensors", src, source_format, dst, model, num_classes,
             tensors)
    return {"dst": str(dst), "model": model, "num_classes": num_classes, "tensors": tensors}


__all__ = ["SOURCE_FORMATS", "convert_checkpoint", "from_pytorchvideo", "pytorchvideo_key", "pytorchvideo_models",
           "sha256_file"]
