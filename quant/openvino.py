"""Post-training int8 for OpenVINO with NNCF (``nncf.quantize`` on the ``ov.Model``).

NNCF inserts FakeQuantize operations (8-bit, per-channel weights) that the CPU
plugin executes as int8 kernels.  Settings (:class:`NncfQuant`):

- preset: "performance" (symmetric activations and weights; NNCF's default, the
  fastest on CPU) or "mixed" (asymmetric activations, for activations with a
  negative tail, e.g. Swish outputs feeding convolutions).
- ignored_scope: node names kept in float (``nncf.IgnoredScope(names=...)``).
- subset_size: number of calibration clips NNCF uses (default: all given).
- fast_bias_correction: NNCF's fast bias correction (True) or the full one.
- calibration method -> NNCF activation range estimator: "histogram" -> HISTOGRAM
  (the range minimising the quantization error on a histogram of the tensor; the
  default, see below), "minmax" -> NNCF's default (min/max statistics),
  "percentile" -> MEAN_QUANTILE (mean over clips of a high/low quantile).  NNCF
  has no KL-entropy estimator: "entropy" is refused.

The graph NNCF sees decides whether int8 pays.  ``targets.openvino`` builds the
``ov.Model`` with ``ov.convert_model(onnx)``, which runs OpenVINO's MOC
transformations (Swish, HSwish, GELU, ... fused into single ops); the ONNX reader
alone (``core.read_model``) leaves X3D's 26 Swish as Sigmoid * Multiply, NNCF then
quantizes both inputs of every Multiply (224 FakeQuantize instead of 145) and the
CPU plugin runs the squeeze-excitation/Swish chains as separate int8/f32
elementwise subgraphs with f32 depthwise convolutions and Reorders between them.
Measured with ``benchmarks.studies.openvino_int8`` (one process, 2 threads, 30
rotated rounds, 32 shipped calibration clips, OpenVINO 2026.4, NNCF 3.4, 2026-12-04;
X3D-XS: the shipped checkpoint at w1.0-r128-f8, the others seeded random weights with
realistic BN statistics), int8 p50 / fp32 p50 in the same run:

=================  ============  ===============  ============  ========================
model              edgevid       read_model       MIXED preset  plain: convert_model(
                   (convert_     (ONNX reader)                  torch) + nncf defaults
                   model(onnx))
=================  ============  ===============  ============  ========================
AVX-512 VNNI (this 2-core EPYC)
X3D-XS w1.0-r128-f8  0.61        0.85             0.64          0.72
X3D-S 13x160         0.55        0.83             0.58          0.65 (pytorchvideo: 0.65)
ghost_tsm 8x160      0.85        1.07             0.94          1.24
convnet2d_s 8x160    0.84        1.01             0.84          fails (torch front end)
AVX2 only (``ONEDNN_MAX_CPU_ISA=AVX2``: the kernels of a CPU without AVX-512/VNNI)
X3D-XS w1.0-r128-f8  0.83        1.00             0.84          0.90
X3D-S 13x160         0.79 (0.67)  1.00 (0.96)     0.81          0.84 (pytorchvideo: 0.82)
=================  ============  ===============  ============  ========================

(In parentheses: an earlier 8-round run; the AVX2 ratios moved between runs on this
shared machine, the VNNI ones did not.)  So edgevid's X3D-S int8 is 1.19x the plain
tools' speed on the same module and on pytorchvideo's own X3D-S with the same
weights (VNNI; 1.04-1.07x with AVX2 only).  Both graphs have the Swish fused;
the torch front end's keeps the squeeze-excitation scaling as a separate int8
Multiply kernel, the ONNX graph's joins it to a JIT subgraph (the study prints the
per-kernel PERF_COUNT totals; taken from a separate profiled compile, they rank the
kernels but do not add up to the timed p50).  The MIXED
preset (asymmetric activations) is slightly slower everywhere (0.58 vs 0.55 on
X3D-S).  What stays float in the Ghost and 2D nets' int8: part of the 1x1
convolutions (PERF_COUNT ``brgconv_avx512_1x1_f32``, about 3 ms of 11 in both),
which is why they gain less; finding which quantizers NNCF leaves out there is
open.

Activation ranges (the same artifacts, ``edgevid compile --target openvino
--precision int8 --calib-method M`` on the shipped checkpoint, 32 shipped
calibration clips; fidelity against PyTorch fp32 on the 300 labelled held-out
clips, 2026-12-04): with NNCF's min/max statistics the int8 logits are shrunk
(int8 = 0.86 x fp32 + noise at w1.0-r128-f8), SQNR 10.5-14.7 dB and agreement
0.89-0.95 over five configurations (w1.0-r128-f8/f4, w0.5-r128-f8, w0.5-r96-f4,
w0.25-r128-f8); with HISTOGRAM ranges SQNR 23.0-27.5 dB and agreement 0.94-0.98
on the same five, with the same FakeQuantize count and build time (about 40 s);
MEAN_QUANTILE 10.1 dB, agreement 0.78; the MIXED preset or 100 calibration clips
change min/max's figures by under 1 dB.  So "histogram" is the default.

No torch.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from edge.core.chatter import captured
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("performance", "mixed")
RANGE_NAMES = {"minmax": "NNCF default (min/max statistics)", "percentile": "MEAN_QUANTILE",
               "histogram": "HISTOGRAM"}


@dataclass(frozen=True)
class NncfQuant:
    """One ``nncf.quantize`` configuration."""

    method: str = "histogram"
    preset: str = "performance"
    ignored_scope: tuple[str, ...] = ()
    subset_size: int | None = None
    fast_bias_correction: bool = True


def quantize_ov(model: Any, clips: Sequence[np.ndarray], config: NncfQuant, labelled: Any = None,
                max_drop: float | None = None) -> tuple[Any, dict[str, Any]]:
    """The int8 ``ov.Model`` of ``model`` calibrated on ``clips`` ((1, 3, T, H, W) float32
    each) and the notes recorded in artifact.json.  With ``max_drop`` and ``labelled``
    (``quant.accuracy.LabelledClips``): ``nncf.quantize_with_accuracy_control``, which
    reverts the most harmful quantizers to float until the top-1 on ``labelled`` is at
    most ``max_drop`` below the float model's."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if config.preset not in PRESETS:
        raise BadInput(f"nncf preset {config.preset!r} unknown; valid presets: {', '.join(PRESETS)}")
    if not clips:
        raise BadInput("openvino: int8 needs calibration clips, got none")
    names = {op.get_friendly_name() for op in model.get_ops()}
    missing = [n for n in config.ignored_scope if n not in names]
    if missing:
        raise BadInput(f"openvino: ignored_scope names not in the model: {', '.join(missing)}")
    ranges = {"minmax": None, "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
              "histogram": RangeEstimatorParametersSet.HISTOGRAM}
    if config.method not in ranges:
        raise BadInput(f"openvino int8: calibration method {config.method!r} is not offered by NNCF; valid "
                       f"methods: {', '.join(ranges)}")
    advanced = None if ranges[config.method] is None else \
        AdvancedQuantizationParameters(activations_range_estimator_params=ranges[config.method])
    preset = nncf.QuantizationPreset.PERFORMANCE if config.preset == "performance" else nncf.QuantizationPreset.MIXED
    data = nncf.Dataset(list(clips))
    common = dict(preset=preset, subset_size=config.subset_size or len(clips),
                  fast_bias_correction=config.fast_bias_correction,
                  ignored_scope=nncf.IgnoredScope(names=list(config.ignored_scope)))
    control: dict[str, Any] = {}
    with quiet_nncf():
        if max_drop is None or labelled is None:
            qmodel = nncf.quantize(model, data, advanced_parameters=advanced, **common)
        else:
            qmodel, control = _with_accuracy_control(model, data, labelled, max_drop, advanced, common)
    notes = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    if control:
        notes["accuracy_control"] = control
    notes.update(tool=f"nncf {nncf.__version__} quantize", calib_clips=len(clips),
                 fake_quantize=count_fake_quantize(qmodel))
    notes["activation_ranges"] = RANGE_NAMES[config.method]
    return qmodel, notes


def _with_accuracy_control(model: Any, data: Any, labelled: Any, max_drop: float, advanced: Any,
                           common: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize_with_accuracy_control`` with top-1 on ``labelled`` as the metric
    (per-clip hits, so NNCF ranks quantizers by the clips they flip)."""
    import nncf

    items = list(zip(labelled, (int(y) for y in labelled.labels)))
    validated: list[float] = []

    def validate(compiled: Any, batch: Any) -> tuple[float, list[float]]:
        out = compiled.output(0)
        hits = [float(np.argmax(compiled(clip)[out]) == label) for clip, label in batch]
        validated.append(float(np.mean(hits)) if hits else 0.0)
        return validated[-1], hits

    qmodel = nncf.quantize_with_accuracy_control(
        model, data, nncf.Dataset(items, lambda item: item[0]), validate, max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **common)
    return qmodel, {"tool": f"nncf {nncf.__version__} quantize_with_accuracy_control", "max_drop": max_drop,
                    "drop_type": "absolute", "metric": "top-1", "validation_clips": len(items),
                    "validation_calls": len(validated),
                    "fake_quantize_kept": count_fake_quantize(qmodel)}


@contextlib.contextmanager
def quiet_nncf() -> Iterator[None]:
    """NNCF's log lines (its own stdout handler) and progress bars (rich, on stdout) go to
    logging (logger "nncf"), i.e. to the log file, not between our progress bars."""
    from nncf.common.logging.logger import nncf_logger

    handlers, propagate = nncf_logger.handlers, nncf_logger.propagate
    nncf_logger.handlers, nncf_logger.propagate = [], True
    try:
        with captured("nncf"):
            yield
    finally:
        nncf_logger.handlers, nncf_logger.propagate = handlers, propagate


def ov_names(model: Any, onnx_nodes: Sequence[str]) -> list[str]:
    """The ops of ``model`` (an ``ov.Model`` read from an ONNX file by the ONNX front end)
    that ONNX nodes ``onnx_nodes`` became: OpenVINO keeps each node's name as the
    friendly name of the op producing its output and names the ops it splits off
    ``<name>/...`` (a Conv with bias -> Convolution ``<name>/WithoutBiases`` + Add
    ``<name>``; Gemm -> MatMul ``<name>/WithoutBiases`` + ...).  A node that left no op
    (folded into a constant) is skipped (logged)."""
    by_name: dict[str, list[str]] = {}
    for op in model.get_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result"):
            continue
        name = op.get_friendly_name()
        by_name.setdefault(name, []).append(name)
        head = name
        while "/" in head:
            head = head.rsplit("/", 1)[0]
            by_name.setdefault(head, []).append(name)
    out: list[str] = []
    gone = []
    for node in onnx_nodes:
        found = by_name.get(node, [])
        if not found:
            gone.append(node)
        out.extend(n for n in found if n not in out)
    if gone:
        log.info("openvino: %d ONNX node(s) left no op in the OpenVINO model (folded), not in ignored_scope: %s",
                 len(gone), ", ".join(gone[:5]))
    return out


def count_fake_quantize(model: Any) -> int:
    """Number of FakeQuantize ops in an ``ov.Model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
