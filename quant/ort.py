"""Static int8 QDQ quantization of an ONNX model with ONNX Runtime's own tool
(``onnxruntime.quantization.quantize_static``).

Recipe (:class:`OrtQuant`, chosen by :func:`ort_recipe`):

- QDQ format (QuantizeLinear/DequantizeLinear pairs), weights per channel.
- Data types, measured: on x86-64 U8 activations with S8 weights (U8S8).
  ORT's guide makes S8S8-with-QDQ the "first choice" and says the x86 CPU EP
  runs S8 activations as U8 (QDQS8ToU8), but with S8 activations ONNX Runtime
  1.32 leaves X3D's grouped 3x3x3 convolutions in float between Q/DQ pairs,
  while with U8 activations it fuses them into QLinearConv too.  Trained X3D-XS
  w1.0-r128-f8, 2 threads, this AVX2 machine, one run (/tmp script): fp32 137 ms;
  S8S8 QDQ 1.19x fp32; U8S8 QDQ 0.73x; U8S8 per-channel + reduce_range 0.72x;
  QOperator U8S8 0.73x; same agreement.  X3D-S: QOperator U8S8 0.72x vs QDQ
  S8S8 1.30x.  On AVX2/AVX-512 *without* VNNI the U8S8 kernels use VPMADDUBSW,
  whose int16 intermediate saturates when weights use the full int8 range; the
  guide's remedy is ``reduce_range`` (7-bit weights).  So: x86 without VNNI
  (this machine: AVX2, no avx_vnni / avx512_vnni) -> U8S8, ``reduce_range=True``;
  x86 with VNNI (VPDPBUSD accumulates in int32) -> U8S8, full 8-bit range; ARM and
  anything else -> S8S8 (the SDOT kernels are signed), full range - not measured
  here (no ARM machine).
- What is quantized (CPU): every op type ORT quantizes (its default).  With
  U8 activations ONNX Runtime 1.32's CPU EP runs the whole quantized X3D as
  QLinear ops (116 QLinearConv incl. the grouped 3x3x3, QLinearMul / Add /
  Sigmoid, 2 Transposes); with S8 activations it left 57 grouped Convs and
  every Mul/Add float between 189 Q / 369 DQ nodes and 86 Transposes - that
  S8 recipe was 1.19-1.33x fp32 here (the earlier profile: the float depthwise
  convs plus the conversions cost more than the int8 GEMMs saved).
  :class:`OrtQuant` can restrict quantization to some op types (``op_types``), and
  ``quant.mixed`` tries keeping depthwise and elementwise ops float, timing
  every candidate and keeping the fastest.
- Calibration: MinMax, Percentile (99.999) or Entropy, over the given clips.
  Entropy collects histograms with ORT's EntropyCalibrater (2048 bins) and
  takes TensorRT's KL threshold on |x| (:func:`entropy_ranges`, quant/kl.py):
  through ``quantize_static`` ORT's search gets 128 histogram and 128 quantized
  bins (a single candidate: exactly MinMax), and with more bins it clips every
  ReLU output to its smallest candidate.
- Layers kept float: ``exclude`` node names (``nodes_to_exclude``), from
  ``--ignore`` or the mixed-precision search (``quant.mixed``), which also reuses
  one calibration for all its candidates (``calib_cache``); and on the CPU target, by
  rule (:func:`slow_int8_convs`, ``QuantSettings.speed_rules``), dense convolutions over at most 4 input channels
  with more than one temporal tap: ONNX Runtime 1.32 runs them as QLinearConv far
  slower than in fp32 - SlowFast's Fast stem (3 -> 8 channels, 5x7x7 kernel, 32
  frames at 64 px): 75 ms int8 against 14 ms fp32 (ORT profiler, 2 threads), which
  made the whole int8 model 1.7x slower than fp32 while every other conv was 2x
  faster; a 3x3x3 conv 3 -> 16 in a toy chain made int8 2x slower than fp32 (16 vs
  8 ms), 7.8 ms with it float.  X3D's, R(2+1)D's and S3D's first convs are (1, k, k):
  not affected.
- ``tensorrt=True``: TensorRT's explicit-quantization form - symmetric
  activations and weights (zero point 0, as TensorRT requires), per-channel
  weights, Q/DQ only on the inputs of Conv/Gemm/MatMul, full 8-bit range.

The recipe is recorded in artifact.json ``notes.quant``.  No torch.
"""
from __future__ import annotations

import contextlib
import io
import logging
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edge.core.chatter import captured
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

TRT_OP_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul")
PERCENTILE = 99.999
ENTROPY_BINS = 2048  # histogram bins of the entropy calibrater (ORT's default 128 makes it MinMax)
ENTROPY_QUANTIZED_BINS = 128
KEEP_RANGE_READERS = frozenset({"Add", "Mul", "Sum"})  # entropy: tensors these read keep their observed range


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
        return OrtQuant(method, activation_type="QUInt8", reduce_range=True,
                        reason="x86 without VNNI: U8S8 QDQ (U8 activations let grouped 3-D convs fuse into "
                               "QLinearConv) with 7-bit weights (reduce_range) against VPMADDUBSW int16 saturation")
    if x86:
        return OrtQuant(method, activation_type="QUInt8",
                        reason="x86 with VNNI: U8S8 QDQ, full 8-bit range (VPDPBUSD accumulates in int32)")
    return OrtQuant(method, reason=f"{machine or 'this CPU'}: S8S8 QDQ, full 8-bit range (signed dot-product "
                                   "kernels, no saturation risk)")


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


SLOW_CONV_REASON = ("dense conv over <= 4 input channels with more than one temporal tap: ONNX Runtime's "
                    "QLinearConv runs it slower than fp32 (quant.ort)")


def slow_int8_convs(src: str | Path) -> list[str]:
    """Names of the Conv nodes of ``src`` kept float on the CPU (module doc): group 1, at most
    4 input channels per group, a 3-D kernel whose temporal extent is above 1."""
    import onnx

    proto = onnx.load(str(src), load_external_data=False)
    shapes = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    names = []
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = shapes.get(node.input[1], ())
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if len(w) == 5 and group == 1 and w[1] <= 4 and w[2] > 1:
            names.append(node.name)
    return names


def quantize_onnx(src: str | Path, dst: str | Path, clips: Sequence[np.ndarray], recipe: OrtQuant,
                  input_name: str, exclude: Sequence[str] = (), calib_cache: str | Path | None = None,
                  speed_rules: bool = False) -> dict[str, Any]:
    """Write the int8 QDQ model of ``src`` to ``dst``, calibrated on ``clips``
    ((1, 3, T, H, W) float32 each); returns the notes recorded in artifact.json.

    exclude: ONNX node names kept float (ORT ``nodes_to_exclude``).
    speed_rules: also keep float the nodes of :func:`slow_int8_convs` (what the CPU
    target deploys; off for error measurements such as ``quant.sensitivity``).
    calib_cache: tensor-range cache (ORT's JSON); reused when the file exists,
    written otherwise, so repeated quantizations of one model calibrate once.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if recipe.method not in methods:
        raise BadInput(f"onnxruntime int8: calibration method {recipe.method!r} is not offered; valid methods: "
                       f"{', '.join(methods)}")
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
    by_rule = slow_int8_convs(src) if speed_rules else []
    excluded = list(dict.fromkeys([*exclude, *by_rule]))
    with tempfile.TemporaryDirectory(prefix="edgevid-ortq-") as tmp:
        cache = Path(calib_cache) if calib_cache is not None else None
        if recipe.method == "entropy" and (cache is None or not cache.is_file()):
            # quantize_static cannot pass the histogram size to its entropy calibrator (see entropy_ranges)
            cache = cache or Path(tmp) / "ranges.json"
            entropy_ranges(src, Reader(input_name, list(clips)), recipe, cache)
        with captured("onnxruntime.quantization"):  # "Please consider pre-processing ..." goes to the log
            quantize_static(str(src), str(dst), Reader(input_name, list(clips)), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                            nodes_to_exclude=excluded,
                            per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                            activation_type=getattr(QuantType, recipe.activation_type),
                            weight_type=getattr(QuantType, recipe.weight_type),
                            calibrate_method=methods[recipe.method], extra_options=extra,
                            calibration_cache_path=None if cache is None else str(cache))
    notes = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()}
    notes.update(tool="onnxruntime.quantization.quantize_static", format="QDQ", calib_clips=len(clips),
                 float_nodes=len(excluded), excluded_nodes=list(exclude))
    if by_rule:
        notes["float_by_rule"] = {"nodes": by_rule, "why": SLOW_CONV_REASON}
    if recipe.method == "percentile":
        notes["percentile"] = PERCENTILE
    if recipe.method == "entropy":
        notes["entropy_bins"] = {"histogram": ENTROPY_BINS, "quantized": ENTROPY_QUANTIZED_BINS}
    log.info("quantized %s -> %s (%s; %d nodes float)", src, dst, recipe.reason, len(excluded))
    return notes


def entropy_ranges(src: str | Path, reader: Any, recipe: OrtQuant, cache: Path) -> None:
    """Entropy (KL-divergence) activation ranges of ``src`` over ``reader``'s clips,
    written to ``cache`` in the format ``quantize_static(calibration_cache_path=)`` reads.

    onnxruntime collects the histograms (its EntropyCalibrater, :data:`ENTROPY_BINS`
    bins; through ``quantize_static`` it would get 128 histogram and 128 quantized
    bins, which leaves one threshold candidate - the full range - so "entropy" would
    silently equal MinMax).  The thresholds come from :func:`quant.kl.entropy_range`
    (TensorRT's KL search on |x|): onnxruntime's own search clips ReLU outputs to the
    smallest candidate (see quant/kl.py).  Tensors read by an Add or a Mul (residual
    sums, Swish and squeeze-excitation gates) keep their observed range: clipping a
    factor of a product or a term of a sum compounds downstream.  Trained X3D-XS,
    32 calibration / 64 held-out clips, ORT: KL everywhere agreed with fp32 on 53 %
    of clips (cosine 0.86); KL except Add/Mul inputs 89 % (0.997); MinMax 92 %.
    """
    import onnx
    from onnxruntime.quantization.calibrate import (CalibrationMethod, TensorData, TensorsData, create_calibrator,
                                                    save_tensors_data)

    from quant.kl import entropy_range

    with tempfile.TemporaryDirectory(prefix="edgevid-entropy-") as tmp:
        calibrator = create_calibrator(Path(src), list(recipe.op_types) if recipe.op_types else [],
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": ENTROPY_BINS,
                                                      "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
                                                      "symmetric": recipe.symmetric_activations})
        with contextlib.redirect_stdout(io.StringIO()):  # the collector prints its progress
            calibrator.collect_data(reader)
        readers: dict[str, set[str]] = {}
        for node in onnx.load(str(src), load_external_data=False).graph.node:
            for t in node.input:
                readers.setdefault(t, set()).add(node.op_type)
        data = {}
        for name, (hist, edges, lo, hi, *_) in calibrator.collector.histogram_dict.items():
            if readers.get(name, set()) & KEEP_RANGE_READERS:
                low, high = (float(lo), float(hi)) if not recipe.symmetric_activations else \
                    (-max(abs(float(lo)), abs(float(hi))), max(abs(float(lo)), abs(float(hi))))
            else:
                low, high = entropy_range(hist, edges, float(lo), float(hi), recipe.symmetric_activations)
            dtype = np.asarray(edges).dtype if np.asarray(edges).dtype in (np.float16, np.float32) else np.float32
            data[name] = TensorData(lowest=np.array(low, dtype=dtype), highest=np.array(high, dtype=dtype),
                                    hist=np.asarray(hist), hist_edges=np.asarray(edges, dtype=dtype))
    save_tensors_data(TensorsData(CalibrationMethod.Entropy, data), cache)
