"""Static int8 QDQ quantization of an ONNX model with ONNX Runtime's own tool
(``onnxruntime.quantization.quantize_static``).

Recipe (:class:`OrtQuant`, chosen by :func:`ort_recipe`):

- QDQ format (QuantizeLinear/DequantizeLinear pairs), weights per channel.
- Data types: S8 activations, S8 weights (S8S8).  ORT's quantization guide
  makes S8S8-with-QDQ the default "first choice"; on x86-64 the CPU EP rewrites
  S8 activations to U8 (QDQS8ToU8) and runs U8S8 kernels.  On AVX2/AVX-512 CPUs
  *without* VNNI those kernels use VPMADDUBSW, whose int16 intermediate can
  saturate when weights use the full int8 range; the guide's remedy is
  ``reduce_range`` (7-bit weights).  So: x86 without VNNI (this machine: AVX2,
  no avx_vnni / avx512_vnni) -> ``reduce_range=True``; x86 with VNNI, ARM and
  anything else -> full 8-bit range.  U8U8 (no saturation, slower) is not used.
- What is quantized (CPU): every op type ORT quantizes (its default).  ONNX
  Runtime 1.32's CPU EP fuses DQ->Conv->Q into QLinearConv for dense
  convolutions but not for grouped Conv3d (X3D's depthwise 3x3x3) nor for
  Mul/Add; :class:`OrtQuant` can restrict quantization to Conv/Gemm/MatMul minus
  grouped 3-D convs (``op_types=CPU_OP_TYPES, skip_grouped_conv3d=True``).
  Measured once (X3D-XS 4x160, random weights, 2 threads, 8 rotated rounds on the
  loaded 2-core machine, /tmp script): p50 x fp32 1.53 (all ops) vs 1.38
  (restricted), cosine to fp32 0.82 vs 0.72 - neither is faster than fp32 here,
  so the default stays ORT's own; see the report of the quant issue.
- Calibration: MinMax, Percentile (99.999) or Entropy, over the given clips.
- ``tensorrt=True``: TensorRT's explicit-quantization form - symmetric
  activations and weights (zero point 0, as TensorRT requires), per-channel
  weights, Q/DQ only on the inputs of Conv/Gemm/MatMul, full 8-bit range.

The recipe is recorded in artifact.json ``notes.quant``.  No torch.
"""
from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edge.errors import BadInput

log = logging.getLogger(__name__)

TRT_OP_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul")
CPU_OP_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul")
PERCENTILE = 99.999


@dataclass(frozen=True)
class OrtQuant:
    """One static-quantization recipe for ``quantize_static``."""

    method: str = "minmax"
    activation_type: str = "QInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    symmetric_activations: bool = False
    op_types: tuple[str, ...] | None = None  # None: every op type ORT quantizes
    quantize_outputs: bool = True  # False: Q/DQ only on the inputs of ``op_types`` (TensorRT)
    skip_grouped_conv3d: bool = False  # keep grouped 3-D convolutions float (no ORT CPU int8 kernel)
    reason: str = ""


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def ort_recipe(method: str, tensorrt: bool = False, flags: set[str] | None = None,
               machine: str | None = None) -> OrtQuant:
    """The recipe for this CPU (or the given ``flags``/``machine``); see the module docstring."""
    if tensorrt:
        return OrtQuant(method, symmetric_activations=True, op_types=TRT_OP_TYPES, quantize_outputs=False,
                        reason="TensorRT explicit quantization: symmetric S8S8, per-channel weights, "
                               "Q/DQ on Conv/Gemm/MatMul inputs")
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    x86 = machine in ("x86_64", "amd64", "i386", "i686")
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8"})
    if x86 and not vnni:
        return OrtQuant(method, reduce_range=True,
                        reason="x86 without VNNI: S8S8 QDQ (run as U8S8) with 7-bit weights (reduce_range) "
                               "against VPMADDUBSW int16 saturation")
    where = "x86 with VNNI" if x86 else machine or "this CPU"
    return OrtQuant(method, reason=f"{where}: S8S8 QDQ, full 8-bit range (no saturation risk)")


class _ClipReader:
    """``CalibrationDataReader`` over a list of clips: {input_name: clip (1, 3, T, H, W)}."""

    def __init__(self, input_name: str, clips: Sequence[np.ndarray]) -> None:
        self._name = input_name
        self._clips = clips
        self._it: Iterator[np.ndarray] = iter(clips)

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip = next(self._it, None)
        return None if clip is None else {self._name: clip}

    def rewind(self) -> None:
        self._it = iter(self._clips)

    def __len__(self) -> int:
        return len(self._clips)


def quantize_onnx(src: str | Path, dst: str | Path, clips: Sequence[np.ndarray], recipe: OrtQuant,
                  input_name: str) -> dict[str, Any]:
    """Write the int8 QDQ model of ``src`` to ``dst``, calibrated on ``clips``
    ((1, 3, T, H, W) float32 each); returns the notes recorded in artifact.json."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if recipe.method not in methods:
        raise BadInput(f"calibration method {recipe.method!r} unknown; valid methods: {', '.join(methods)}")
    if not clips:
        raise BadInput(f"{src}: int8 needs calibration clips, got none")

    class Reader(_ClipReader, CalibrationDataReader):  # ORT checks isinstance(CalibrationDataReader)
        pass

    extra: dict[str, Any] = {"ActivationSymmetric": recipe.symmetric_activations,
                             "WeightSymmetric": True, "CalibMovingAverage": False}
    if recipe.method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    if not recipe.quantize_outputs and recipe.op_types:
        extra["OpTypesToExcludeOutputQuantization"] = list(recipe.op_types)
    exclude = grouped_conv3d(src) if recipe.skip_grouped_conv3d else []
    quantize_static(str(src), str(dst), Reader(input_name, list(clips)), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                    nodes_to_exclude=exclude,
                    per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                    activation_type=getattr(QuantType, recipe.activation_type),
                    weight_type=getattr(QuantType, recipe.weight_type),
                    calibrate_method=methods[recipe.method], extra_options=extra)
    notes = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()}
    notes.update(tool="onnxruntime.quantization.quantize_static", format="QDQ", calib_clips=len(clips),
                 float_nodes=len(exclude))
    if recipe.method == "percentile":
        notes["percentile"] = PERCENTILE
    log.info("quantized %s -> %s (%s)", src, dst, recipe.reason)
    return notes


def count_qdq(path: str | Path) -> dict[str, int]:
    """Number of QuantizeLinear / DequantizeLinear nodes in an ONNX model."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


def grouped_conv3d(path: str | Path) -> list[str]:
    """Names of the Conv nodes with group > 1 and a 3-D kernel (kept float on the CPU)."""
    import onnx
    from onnx import helper

    names = []
    for n in onnx.load(str(path)).graph.node:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("group", 1) > 1 and len(attrs.get("kernel_shape", ())) == 3:
            names.append(n.name)
    return names
