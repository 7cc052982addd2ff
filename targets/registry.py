"""The target registry: a dict literal of ``"module:Class"`` so that listing
targets imports no runtime; ``get_target`` imports the one asked for."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.core.errors import BadInput
from targets.base import Target

if TYPE_CHECKING:  # pragma: no cover
    from quant.settings import QuantSettings


@dataclass(frozen=True)
class TargetOptions:
    """Build/run options every target understands (each ignores what it has no use for).

    threads: intra-op threads of the runner (None: the runtime's default).
    device: runtime device name (OpenVINO "CPU"/"GPU"/"NPU"; ORT "cpu"/"cuda"/"tensorrt").
    hard_activations: allow lowering Swish/Sigmoid to ReLU-family approximations
        (changes the math; only where a target's operator set needs it).
    quant: int8 settings beyond the calibration clips (``quant.settings.QuantSettings``:
        layers kept float, NNCF preset and subset size); onnxruntime and openvino.
    """

    threads: int | None = None
    device: str | None = None
    hard_activations: bool = False
    quant: "QuantSettings | None" = None


TARGETS: dict[str, str] = {
    "onnxruntime": "targets.onnxruntime:OnnxRuntimeTarget",
    "openvino": "targets.openvino:OpenVinoTarget",
    "tflite": "targets.tflite:TfliteTarget",
    "tensorrt": "targets.tensorrt:TensorRtTarget",
    "fpga": "targets.fpga:FpgaTarget",
}


def get_target(name: str, options: TargetOptions | None = None) -> Target:
    """The target called ``name``; unknown names list the valid ones."""
    try:
        module, cls = TARGETS[name].split(":")
    except KeyError:
        raise BadInput(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}") from None
    return getattr(importlib.import_module(module), cls)(options or TargetOptions())
