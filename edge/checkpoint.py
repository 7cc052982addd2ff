"""edgevid checkpoints: load, validate and save, never executing pickled code.

An edgevid checkpoint is a ``torch.save``d dict::

    {"format": "edgevid", "version": 1, "variant": "<tag>", "num_classes": int,
     "state_dict": {...}, "meta": {...}}

Loading uses ``torch.load(weights_only=True)``: a file whose pickle needs code to
run is refused with a message that says so.  Saving is atomic (write + rename).
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.core.io import atomic_write
from edge.core.variant import Variant

FORMAT = "edgevid"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    variant: Variant
    num_classes: int
    state_dict: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any] = field(default_factory=dict)


def load_pickle(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one ``BadInput`` line."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise BadInput(
                f"{path}: refused - unpickling it would execute code (loaded with weights_only=True; "
                "only tensors and plain containers are allowed)") from None
        raise BadInput(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadInput(f"{path}: truncated or not a torch checkpoint ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def as_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded object: a bare state dict, or one under
    ``state_dict`` / ``model_state`` (PyTorchVideo) / ``model``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    raise BadInput(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise ``BadInput`` naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise BadInput(f"{path}: key {key!r} missing from the checkpoint")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise BadInput(f"{path}: shape mismatch at {key!r}: checkpoint {tuple(state[key].shape)}, "
                           f"model {tuple(tensor.shape)}")
    for key in state:
        if key not in expected:
            raise BadInput(f"{path}: unexpected key {key!r} (not in the model)")


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> nn.Module:
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    obj = load_pickle(path)
    if not (isinstance(obj, Mapping) and obj.get("format") == FORMAT):
        raise BadInput(f"{path}: not an edgevid checkpoint (convert PyTorchVideo files with "
                       "`edgevid convert-ckpt`)")
    if obj.get("version") != VERSION:
        raise BadInput(f"{path}: edgevid checkpoint version {obj.get('version')!r}, expected {VERSION}")
    try:
        variant = Variant.from_tag(str(obj["variant"]))
        num_classes = int(obj["num_classes"])
    except KeyError as e:
        raise BadInput(f"{path}: edgevid checkpoint lacks {e.args[0]!r}") from None
    return Checkpoint(variant, num_classes, as_state_dict(obj["state_dict"], path), dict(obj.get("meta", {})))


def clip_sampling(meta: Mapping[str, Any] | None, path: str | Path = "checkpoint") -> str:
    """How the frames of a clip are sampled for the network of a checkpoint with
    ``meta`` ("stride", X3D's, or "uniform" over the whole video): ``meta["sampling"]``;
    a checkpoint written by ``edgevid train`` without it was trained on uniform clips;
    anything else (converted PyTorchVideo weights; no checkpoint: ``None``) takes
    X3D's stride sampling."""
    meta = meta or {}
    sampling = meta.get("sampling") or ("uniform" if "train" in meta else "stride")
    if sampling not in ("stride", "uniform"):
        raise BadInput(f"{path}: meta sampling {sampling!r} is neither 'stride' nor 'uniform'")
    return str(sampling)


def save_checkpoint(path: str | Path, model: nn.Module, variant: Variant, num_classes: int,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write atomically (:func:`atomic_save`)."""
    payload = {"format": FORMAT, "version": VERSION, "variant": variant.tag, "num_classes": num_classes,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "meta": dict(meta or {})}
    return atomic_save(payload, path)


def atomic_save(payload: object, path: str | Path) -> Path:
    """``torch.save`` through :func:`edge.core.io.atomic_write`: ``path`` is either the old
    file or the whole new one, never half written."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def variant_for(model: str, ckpt: str | Path | Checkpoint | None, width: float | None = None,
                resolution: int | None = None, frames: int | None = None, precision: str = "fp32",
                prune: float = 0.0, where: str | Path | None = None) -> Variant:
    """The variant a command works on: what the flags give; what they leave open (None
    or 0) from the checkpoint's own configuration when ``ckpt`` (a path, or a
    :class:`Checkpoint` already loaded) is given - the MutualNet checkpoint:
    w1.0-r128-f8 - else from the zoo model's defaults.  ``BadInput`` naming ``where``
    (default: the path) when ``ckpt`` holds another model."""
    from edge.models.registry import variant as zoo_variant

    if ckpt:
        held = (ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)).variant
        if held.model != model:
            name = where or ("checkpoint" if isinstance(ckpt, Checkpoint) else ckpt)
            raise BadInput(f"{name}: checkpoint holds {held.model}, not {model}")
        width, resolution, frames = width or held.width, resolution or held.resolution, frames or held.frames
    return zoo_variant(model, width=width or 1.0, resolution=resolution or None, frames=frames or None,
                       precision=precision, prune=prune)


def load_model(path: str | Path, variant: Variant | None = None) -> tuple[nn.Module, Checkpoint]:
    """Build the checkpoint's model (or ``variant``'s, same model/width) and load the weights."""
    from edge.models import create_model

    ckpt = load_checkpoint(path)
    v = variant or ckpt.variant
    if v.model != ckpt.variant.model:
        raise BadInput(f"{path}: checkpoint holds {ckpt.variant.model}, not {v.model}")
    model = create_model(v, num_classes=ckpt.num_classes)
    load_into(model, ckpt.state_dict, path)
    return model.eval(), ckpt
