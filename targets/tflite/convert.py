"""tflite build steps: litert-torch conversion of a (lowered) torch module and
ai-edge-quantizer rewrites of the flatbuffer.

API: ``convert(module, example, dest)`` (torch.export -> StableHLO -> TFLite at
``example``'s shape), ``quantize_int8(path, clips, method) -> notes`` (full-integer
``static_wi8_ai8``, calibrated on (1, 3, T, H, W) float clips; activation ranges by
:data:`METHODS`), ``fp16_weights(path)
-> note`` (conv / FC weights stored as float16), ``calibration(calib, variant) ->
(clips, source, method)``, ``version(dist) -> str``.  litert-torch and ai-edge-quantizer
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


def calibration(calib: Iterable[np.ndarray] | None, variant: "Variant") -> tuple[list[np.ndarray], str, str]:
    """The caller's calibration clips, where they came from and the calibration method
    (a ``quant.calib.CalibSet``'s; "histogram" for plain clips)."""
    from quant.calib import calib_clips, check_clips, default_method

    if calib is None:
        raise BadInput("tflite int8: no calibration clips given (the caller passes them; edgevid compile reads "
                       "the shipped calibration set when --calib is absent)")
    clips, method = calib_clips(calib, default=default_method("tflite"))
    where = str(getattr(calib, "path", "calibration clips"))
    check_clips(clips, variant.input_shape, where)
    if not clips:
        raise BadInput("tflite int8: no calibration clips")
    return clips, where, method


def convert(module: Any, example: Any, dest: Path) -> None:
    """litert-torch conversion of ``module`` at ``example``'s shape into ``dest``."""
    quiet = None if log.isEnabledFor(logging.DEBUG) else "n"  # its progress lines go to stdout
    try:
        # importing it starts TensorFlow's C++ logging (absl, oneDNN notices): inside the capture
        with _env("LITERT_TORCH_SHOW_PROGRESS", quiet), captured("litert_torch"):
            import litert_torch

            litert_torch.convert(module, (example,)).export(str(dest))
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export and the MLIR converter raise many types
        raise BadInput(f"tflite: litert-torch could not convert the model: {first_line(e)}") from None
    log.info("converted to %s (%.1f MB)", dest, dest.stat().st_size / 1e6)

# calibration methods of the int8 recipe: how each activation tensor's range is chosen
METHODS: dict[str, str] = {
    "histogram": "the range minimising the expected quantization error on a histogram of the tensor over "
                 "all calibration clips (quant.histogram.mse_range)",
    "percentile": "the 99.999th percentile of each tail over all calibration clips (quant.histogram)",
    "minmax": "ai-edge-quantizer's min/max (a moving average of per-clip extremes)"}


def quantize_int8(path: Path, clips: list[np.ndarray], method: str = "histogram") -> dict[str, Any]:
    """Rewrite ``path`` (the fp32 flatbuffer) as a full-integer int8 model calibrated on
    ``clips``: ai-edge-quantizer's static recipe (int8 weights, symmetric per output
    channel for conv/FC; int8 activations per tensor, asymmetric), with the activation
    ranges of ``method`` (:data:`METHODS`; ai-edge-quantizer's own are a moving average
    of per-clip min/max, which on the shipped X3D-XS left int8 logits at 12 dB SQNR
    against fp32; the histogram ranges reach 27 dB at the same speed)."""
    if method not in METHODS:
        raise BadInput(f"tflite int8: calibration method {method!r} is not offered; valid methods: "
                       f"{', '.join(METHODS)}")
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
    clips = [np.ascontiguousarray(c, dtype=np.float32) for c in clips]
    try:
        with _env("TQDM_DISABLE", "1"), captured("ai_edge_quantizer"):  # its per-op progress bar: to the log
            q = quantizer.Quantizer(str(path), getattr(recipe, INT8_RECIPE)())
            result = q.calibrate({key: [{name: c} for c in clips]}, num_threads=1)
            changed = 0
            if method != "minmax":
                result, changed = _histogram_ranges(module, path, clips, result, method)
            q.quantize(result, enable_progress_bar=False, enable_progress_report=False).export_model(
                str(path), overwrite=True)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - the quantizer raises many types
        raise BadInput(f"tflite int8: ai-edge-quantizer could not quantize the model: {first_line(e)}") from None
    notes = {"scheme": "full-integer int8 (ai-edge-quantizer static_wi8_ai8): conv/FC weights int8 symmetric "
                       "per output channel, activations int8 per tensor",
             "method": method, "activation_ranges": METHODS[method],
             "calibration_clips": len(clips), "io": "int8",
             "size": f"{before / 1e6:.2f} -> {path.stat().st_size / 1e6:.2f} MB"}
    if method != "minmax":
        notes["ranges_narrowed"] = f"{changed} of {len(result)} activation tensors narrower than their min/max"
    return notes


def _histogram_ranges(module: Any, path: Path, clips: list[np.ndarray], qsvs: dict[str, Any],
                      method: str) -> tuple[dict[str, Any], int]:
    """``qsvs`` (ai-edge-quantizer's {tensor: {"min", "max"}}) with the min/max of every
    activation tensor replaced by ``method``'s range over ``clips``, and how many ranges
    came out narrower than the tensor's observed extremes.  The fp32 model runs once per
    clip on the reference kernels with every intermediate tensor kept."""
    from quant.histogram import RunningHistogram, mse_range, percentile_range

    it = module.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    produced = {o for op in it._get_ops_details() for o in op["outputs"]}
    inp = it.get_input_details()[0]["index"]
    names = [n for n in qsvs if n in index and (index[n] in produced or index[n] == inp)]
    hists = {n: RunningHistogram() for n in names}
    for clip in clips:
        it.set_tensor(inp, clip)
        it.invoke()
        for n in names:
            hists[n].add(it.get_tensor(index[n]))
    out, changed = dict(qsvs), 0
    for n in names:
        h = hists[n]
        if h.total == 0:
            continue
        lo, hi = mse_range(h) if method == "histogram" else percentile_range(h)
        shape = np.shape(qsvs[n]["min"])
        out[n] = {**qsvs[n], "min": np.full(shape, lo, dtype=np.float32), "max": np.full(shape, hi, dtype=np.float32)}
        changed += int(hi < 0.999 * max(h.hi, 0.0) or lo > 0.999 * min(h.lo, 0.0))
    return out, changed


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
