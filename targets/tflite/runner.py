"""LiteRT runner (torch-free): a loaded ``.tflite`` called on a float clip.

API: ``interpreter_module() -> module | None`` (``ai_edge_litert.interpreter``, else
``tflite_runtime.interpreter``; XNNPACK is its default delegate), ``FLATBUFFER_ID``,
``TfliteRunner(artifact, interpreter)``: ``runner(clip (1, 3, T, H, W) float32)
-> logits (1, classes) float32`` (an int8 interface is quantized / dequantized
with the tensors' own scale and zero point).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import numpy as np

from edge.core.errors import BadInput
from quant.messages import first_line
from targets.base import Artifact, check_clip

log = logging.getLogger(__name__)

# Interpreter modules, best first: LiteRT, then the legacy tflite-runtime of older boards.
INTERPRETERS: tuple[str, ...] = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
FLATBUFFER_ID = b"TFL3"


def interpreter_module() -> Any | None:
    """The first importable interpreter module of ``INTERPRETERS``, or None."""
    for name in INTERPRETERS:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        try:
            return importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - tflite_runtime 2.14 raises AttributeError/ImportError under numpy 2
            log.debug("%s does not import: %s", name, first_line(e))
    return None


def _int8_params(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of an int8 interface tensor, None for a float one."""
    if np.dtype(detail["dtype"]) != np.int8:
        return None
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


class TfliteRunner:
    """A loaded ``.tflite``: ``runner(clip (1, 3, T, H, W) float32) -> logits (1, classes)``.

    ``delegated``: True when XNNPACK took over the graph (its ``DELEGATE`` node is
    in the execution plan).
    """

    def __init__(self, artifact: Artifact, interpreter: Any) -> None:
        self.artifact = artifact
        self._interp = interpreter
        inp, out = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise BadInput(f"{artifact.model_path}: expected one input and one output, "
                           f"got {len(inp)} and {len(out)}")
        self._in, self._out = inp[0]["index"], out[0]["index"]
        got = tuple(int(d) for d in inp[0]["shape"])
        if got != tuple(artifact.input.shape):
            raise BadInput(f"{artifact.model_path}: model input shape {got} does not match artifact.json's "
                           f"{tuple(artifact.input.shape)}")
        ops = getattr(interpreter, "_get_ops_details", lambda: [])()
        self.delegated = any(op.get("op_name") == "DELEGATE" for op in ops)
        self._qin = _int8_params(inp[0])
        self._qout = _int8_params(out[0])

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        if self._interp is None:
            raise RuntimeError(f"{self.artifact.path}: runner is closed")
        x = check_clip(clip, self.artifact.input, self.artifact.path)
        if self._qin is not None:  # int8 interface: quantize with the input tensor's parameters
            scale, zp = self._qin
            x = np.clip(np.rint(x / scale) + zp, -128, 127).astype(np.int8)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out).copy()
        if self._qout is not None:
            scale, zp = self._qout
            y = ((y.astype(np.float32) - zp) * scale).astype(np.float32)
        return y

    def close(self) -> None:
        self._interp = None


