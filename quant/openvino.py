"""Post-training int8 for OpenVINO with NNCF (``nncf.quantize`` on the ``ov.Model``).

NNCF inserts FakeQuantize operations (8-bit, per-channel weights) that the CPU
plugin executes as int8 kernels.  Settings (:class:`NncfQuant`):

- preset: "performance" (symmetric activations and weights; NNCF's default, the
  fastest on CPU) or "mixed" (asymmetric activations, for activations with a
  negative tail, e.g. Swish outputs feeding convolutions).
- ignored_scope: node names kept in float (``nncf.IgnoredScope(names=...)``).
- subset_size: number of calibration clips NNCF uses (default: all given).
- fast_bias_correction: NNCF's fast bias correction (True) or the full one.
- calibration method -> NNCF activation range estimator: "minmax" -> NNCF's default,
  "percentile" -> MEAN_QUANTILE (mean over clips of a high/low quantile),
  "entropy" -> HISTOGRAM (histogram-based range search).

Is the NNCF model run in int8?  Yes: the artifact's IR carries the FakeQuantize
ops (``count_fake_quantize``) and the compiled model's runtime graph
(``compiled.get_runtime_model()``, rt_info ``runtimePrecision``) has the dense
convolutions as u8 (trained X3D-XS w1.0-r128-f8: 59 Convolution u8, 56 f32 -
depthwise and squeeze-excitation - and 45 Reorders where fp32 has 1).  Why it is
still slower than fp32 on this CPU (AMD EPYC, AVX2, no VNNI / AVX-512; PERF_COUNT,
2 threads, ms per run): fp32 303 = 1x1 convs 180 (brgconv_avx2_1x1_f32) +
depthwise 78 + Swish/SE subgraphs 30; int8 395 = 1x1 convs 176 (jit_avx2_1x1_I8:
without VNNI int8 multiply-adds are no faster than fp32 FMAs) + int8 elementwise
subgraphs 67 + f32 subgraphs 41 + depthwise 50 + Reorders 23 + ...  On VNNI CPUs
the int8 1x1 convolutions are 2-3x faster, which is where the issue's X3D-S
48-51 ms (int8) vs 75 ms (fp32) comes from.  Keeping the elementwise ops float
(``quant.mixed`` candidate ``convs-only``) removes most of the extra cost here:
1.16x fp32 instead of 1.36x.

No torch.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("performance", "mixed")
RANGE_NAMES = {"minmax": "NNCF default (min/max statistics)", "percentile": "MEAN_QUANTILE", "entropy": "HISTOGRAM"}


@dataclass(frozen=True)
class NncfQuant:
    """One ``nncf.quantize`` configuration."""

    method: str = "minmax"
    preset: str = "performance"
    ignored_scope: tuple[str, ...] = ()
    subset_size: int | None = None
    fast_bias_correction: bool = True


def quantize_ov(model: Any, clips: Sequence[np.ndarray], config: NncfQuant) -> tuple[Any, dict[str, Any]]:
    """The int8 ``ov.Model`` of ``model`` calibrated on ``clips`` ((1, 3, T, H, W) float32
    each) and the notes recorded in artifact.json."""
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
              "entropy": RangeEstimatorParametersSet.HISTOGRAM}
    if config.method not in ranges:
        raise BadInput(f"calibration method {config.method!r} unknown; valid methods: {', '.join(ranges)}")
    advanced = None if ranges[config.method] is None else \
        AdvancedQuantizationParameters(activations_range_estimator_params=ranges[config.method])
    preset = nncf.QuantizationPreset.PERFORMANCE if config.preset == "performance" else nncf.QuantizationPreset.MIXED
    data = nncf.Dataset(list(clips))
    qmodel = nncf.quantize(model, data, preset=preset, subset_size=config.subset_size or len(clips),
                           fast_bias_correction=config.fast_bias_correction,
                           ignored_scope=nncf.IgnoredScope(names=list(config.ignored_scope)),
                           advanced_parameters=advanced)
    notes = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    notes.update(tool=f"nncf {nncf.__version__} quantize", calib_clips=len(clips),
                 fake_quantize=count_fake_quantize(qmodel))
    notes["activation_ranges"] = RANGE_NAMES[config.method]
    return qmodel, notes


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
