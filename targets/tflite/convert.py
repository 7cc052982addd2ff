"""tflite build steps: litert-torch conversion of a (lowered) torch module and
ai-edge-quantizer rewrites of the flatbuffer.

API: ``convert(module, example, dest)`` (torch.export -> StableHLO -> TFLite at
``example``'s shape), ``quantize_int8(path, clips) -> notes`` (full-integer
``static_wi8_ai8``, calibrated on (1, 3, T, H, W) float clips), ``fp16_weights(path)
-> note`` (conv / FC weights stored as float16), ``calibration(calib, variant) ->
(clips, source)``, ``version(dist) -> str``.  litert-torch and ai-edge-quantizer
are imported when called.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from edge.core.chatter import captured
from edge.core.errors import BadInput
from quant.messages import first_line
from targets.tflite.runner import interpreter_module

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant

log = logging.getLogger(__name__)

EXTRA_HINT = "tflite compile needs the tflite extra: pip install -e .[tflite]"
# TFLite ops the int8 recipe covers (ai-edge-quantizer's ALL_SUPPORTED); anything else would stay float
INT8_RECIPE = "static_wi8_ai8"
# TFLite ops ai-edge-quantizer's fp16 weight recipe applies to (weights of everything else stay fp32)
FP16_OPS: tuple[str, ...] = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` while the block runs (``None``: left as it is), then
    the previous value back (or the variable removed)."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def calibration(calib: Iterable[np.ndarray] | None, variant: "Variant") -> tuple[list[np.ndarray], str]:
    """The caller's calibration clips and where they came from."""
    from quant.calib import calib_clips, check_clips

    if calib is None:
        raise BadInput("tflite int8: no calibration clips given (the caller passes them; edgevid compile reads "
                       "the shipped calibration set when --calib is absent)")
    clips, _ = calib_clips(calib)
    where = str(getattr(calib, "path", "calibration clips"))
    check_clips(clips, variant.input_shape, where)
    if not clips:
        raise BadInput("tflite int8: no calibration clips")
    return clips, where


def convert(module: Any, example: Any, dest: Path) -> None:
    """litert-torch conversion of ``module`` at ``example``'s shape into ``dest``."""
    import litert_torch

    quiet = None if log.isEnabledFor(logging.DEBUG) else "n"  # its progress lines go to stdout
    try:
        with _env("LITERT_TORCH_SHOW_PROGRESS", quiet), captured("litert_torch"):
            litert_torch.convert(module, (example,)).export(str(dest))
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export and the MLIR converter raise many types
        raise BadInput(f"tflite: litert-torch could not convert the model: {first_line(e)}") from None
    log.info("converted to %s (%.1f MB)", dest, dest.stat().st_size / 1e6)

def quantize_int8(path: Path, clips: list[np.ndarray]) -> dict[str, Any]:
    """Rewrite ``path`` (the fp32 flatbuffer) as a full-integer int8 model calibrated on
    ``clips``: ai-edge-quantizer's static recipe (int8 weights, symmetric per output
    channel for conv/FC; int8 activations per tensor from min/max over the clips)."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise BadInput(f"tflite int8 needs ai-edge-quantizer (part of the tflite extra); {EXTRA_HINT}") from None
    module = interpreter_module()
    if module is None:
        raise BadInput("tflite int8 calibrates on the LiteRT interpreter: pip install ai-edge-litert")
    sig = module.Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    before = path.stat().st_size
    try:
        with _env("TQDM_DISABLE", "1"), captured("ai_edge_quantizer"):  # its per-op progress bar: to the log
            q = quantizer.Quantizer(str(path), getattr(recipe, INT8_RECIPE)())
            result = q.calibrate({key: [{name: np.ascontiguousarray(c, dtype=np.float32)} for c in clips]},
                                 num_threads=1)
            q.quantize(result, enable_progress_bar=False, enable_progress_report=False).export_model(
                str(path), overwrite=True)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - the quantizer raises many types
        raise BadInput(f"tflite int8: ai-edge-quantizer could not quantize the model: {first_line(e)}") from None
    return {"scheme": "full-integer int8 (ai-edge-quantizer static_wi8_ai8): conv/FC weights int8 symmetric "
                      "per output channel, activations int8 per tensor (min/max calibration)",
            "calibration_clips": len(clips), "io": "int8",
            "size": f"{before / 1e6:.2f} -> {path.stat().st_size / 1e6:.2f} MB"}

def fp16_weights(path: Path) -> str:
    """Rewrite ``path`` with float16 conv/FC weights (ai-edge-quantizer float casting)."""
    try:
        from ai_edge_quantizer import algorithm_manager, quantizer
    except ImportError:
        raise BadInput(f"tflite fp16 needs ai-edge-quantizer (part of the tflite extra); {EXTRA_HINT}") from None
    q = quantizer.Quantizer(str(path))
    for op in FP16_OPS:
        q.add_weight_only_config(regex=".*", operation_name=op, num_bits=16,
                                 algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    before = path.stat().st_size
    q.quantize(enable_progress_bar=False, enable_progress_report=False).export_model(str(path), overwrite=True)
    return (f"conv/FC weights stored as float16 ({before / 1e6:.1f} -> {path.stat().st_size / 1e6:.1f} MB), "
            "dequantized when loaded; XNNPACK computes in float32 on x86")
