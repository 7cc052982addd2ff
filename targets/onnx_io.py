"""The ONNX file a target compiles from: export a torch module or take a given
``.onnx``, refuse corrupt files and wrong shapes (the readers are
:mod:`quant.onnx_io`).

API: ``prepare_onnx(model, variant, dest) -> (path, notes)``.

Shared by the targets that build from ONNX (onnxruntime, openvino, tensorrt).
Imports neither torch nor a runtime at module level: ``targets.export`` (torch) is
imported only when a module has to be exported.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from edge.core.errors import BadInput
from quant.onnx_io import io_specs, load_onnx
from targets.base import ModelSource

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant

log = logging.getLogger(__name__)


def prepare_onnx(model: ModelSource, variant: "Variant", dest: str | Path) -> tuple[Path, dict[str, str]]:
    """Write the ONNX model to compile from to ``dest`` and return (path, notes).

    model: an ``nn.Module`` (exported by ``targets.export.export_onnx`` at
    ``variant.input_shape`` = (1, 3, T, H, W)) or the path of an ONNX file, which is
    validated and copied; its input shape must equal ``variant.input_shape``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (str, Path)):
        src = Path(model)
        proto = load_onnx(src)
        spec_in, _ = io_specs(proto, src)
        if tuple(spec_in.shape) != tuple(variant.input_shape):
            raise BadInput(f"{src}: input {spec_in.name!r} has shape {spec_in.shape}, but variant {variant.tag} "
                           f"needs {variant.input_shape}")
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        return dest, {"source": str(src), "exporter": "given"}
    from targets.export import export_onnx  # torch: build side only

    res = export_onnx(model, variant.input_shape, dest)
    return res.path, {"source": type(model).__name__, "exporter": res.exporter, "opset": str(res.opset)}
