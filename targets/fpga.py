"""FPGA target: the FPGA operator set (:data:`targets.opset.FPGA_OPSET`, modelled
on Vitis AI DPU / FINN / hls4ml), reached by lowering.

``compile`` = export (or copy) the ONNX model -> :func:`targets.lowering.lower`
-> :func:`targets.checker.check`.  The artifact is the lowered ONNX model
(``model.onnx``): every node inside the operator set, input (1, 3, T, H, W) and
output (1, classes) as exported.  When nodes remain outside the set the artifact
is still written, with status ``"failed"`` and the reasons in its notes, and
``GateFailed`` (CLI exit 1) lists them.

``TargetOptions.hard_activations`` lets the lowering replace Sigmoid (the SE
gate, and Swish ``x * sigmoid(x)``) with ReLU6(x + 3) / 6: X3D needs it to fit
the set; it changes the logits, and ``notes.lowering.vs_source`` records by how
much (lowered vs exported model on ONNX Runtime, the same clips: the calibration
clips when given, else seeded N(0, 1) clips).

Precision ``int8`` (Vitis AI DPU rule: symmetric, per-tensor, power-of-two
scales, int32 accumulators and bias): export -> lower (fp32) -> :func:`quant.pow2.quantize`
calibrated on ``calib`` (a :class:`quant.calib.CalibSet` or any clips, passed by the
caller - ``edge.compile`` reads the shipped set when the user gives none; method:
CalibSet "minmax" -> pow2 "maxabs", no clipping; "percentile"/"entropy" -> pow2 "mse") -> check -> ``model.onnx`` is the
QDQ model (int8 Quantize/DequantizeLinear, zero point 0, scales 2^-f).
``notes.quant`` records the scheme, method, clip count and the simulator's
resource estimate (MACs, weight/activation bytes, peak on-chip buffer).

``load``: fp32 artifacts run the lowered model on ONNX Runtime's CPU provider (a
functional stand-in for the board).  int8 artifacts run on the "device", the
integer-only simulator :class:`quant.intsim.Simulator` (DPU rounding, half up),
when ``TargetOptions.device`` is None or "sim"; device "ort" runs the QDQ model
on ONNX Runtime instead (float QDQ emulation: QuantizeLinear rounds half to even,
so a few logits differ from the device by a few output LSBs).  Needs only onnx +
onnxruntime (+ numpy for the simulator).
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from edge.core.errors import BadInput, GateFailed
from quant.messages import first_line
from quant.ort_session import ort_session
from targets.base import Artifact, ModelSource, check_clip
from targets.common import check_artifact
from targets.opset import FPGA_OPSET
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant
    from targets.onnxruntime import OnnxRuntimeRunner

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32", "int8")
INT8_DEVICES = ("sim", "ort")
# CalibSet method -> the pow2 range rule (quant.pow2); edge.qat uses the same
POW2_METHOD = {"minmax": "maxabs", "percentile": "mse", "entropy": "mse", "histogram": "mse"}
_SHOWN_REASONS = 12


class FpgaTarget:
    name = "fpga"
    opset = FPGA_OPSET

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))

    def unavailable_reason(self) -> str:
        return "" if self.available() else "fpga needs onnx and onnxruntime (pip install onnx onnxruntime)"

    # ------------------------------------------------------------------ check
    def check(self, onnx_path: str | Path) -> list[str]:
        """One reason per node outside the FPGA operator set (node, op type, rule broken)."""
        from targets.checker import check

        return check(Path(onnx_path), self.opset)

    # ------------------------------------------------------------------ compile
    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact:
        """Export/copy, lower, check; write ``workdir/model.onnx`` + ``artifact.json``.

        ``calib`` clips (1, 3, T, H, W), when given, are the clips the lowering's
        fidelity is measured on (else seeded N(0, 1) clips).  Raises ``GateFailed``
        (after writing a ``"failed"`` artifact) when nodes remain outside the set.
        """
        import onnx
        import onnxruntime as ort

        from quant.onnx_io import io_specs, load_onnx
        from targets.checker import check
        from targets.lowering import lower
        from targets.lowering.fidelity import lowering_fidelity
        from targets.onnx_io import prepare_onnx

        if variant.precision not in PRECISIONS:
            raise BadInput(f"fpga: precision {variant.precision} is not supported (supported: "
                           f"{', '.join(PRECISIONS)})")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        source, notes = prepare_onnx(model, variant, workdir / "source.onnx")
        try:
            proto = load_onnx(source)
            lowered = lower(proto, self.opset, hard_activations=self.options.hard_activations)
            path = workdir / MODEL_FILE
            clips, method = _calibration(calib, variant) if variant.precision == "int8" else (None, "")
            fidelity = lowering_fidelity(proto, lowered, clips if clips is not None else calib)
            quant_notes: dict[str, Any] = {}
            if variant.precision == "int8" and not check(lowered, self.opset):
                lowered, quant_notes = _quantize(lowered, clips or [], method)
            onnx.save_model(lowered, str(path))
        finally:
            source.unlink(missing_ok=True)
        spec_in, spec_out = io_specs(lowered, path)
        reasons = check(lowered, self.opset)
        notes = {**notes, "opset": self.opset.name,
                 "lowering": {"hard_activations": self.options.hard_activations, "passes": lowered.doc_string,
                              "vs_source": fidelity}}
        if quant_notes:
            notes["quant"] = quant_notes
        art = Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                              input=spec_in, output=spec_out, model_file=MODEL_FILE,
                              tools={"onnx": onnx.__version__, "onnxruntime": ort.__version__}, notes=notes)
        if reasons:
            art = art.with_(status="failed", notes={**art.notes, "reasons": reasons}).write()
            shown = "\n  ".join(reasons[:_SHOWN_REASONS])
            more = (f"\n  ... and {len(reasons) - _SHOWN_REASONS} more (artifact.json notes.reasons)"
                    if len(reasons) > _SHOWN_REASONS else "")
            raise GateFailed(f"{workdir}: {len(reasons)} node(s) outside the {self.opset.name} operator set after "
                             f"lowering:\n  {shown}{more}")
        return art

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> "OnnxRuntimeRunner | SimRunner":
        """Verify the artifact; fp32: ONNX Runtime (CPU provider); int8: the integer
        simulator (device None/"sim") or ONNX Runtime on the QDQ model (device "ort")."""
        from targets.onnxruntime import OnnxRuntimeRunner

        check_artifact(artifact, self.name)
        if artifact.precision == "int8":
            device = (self.options.device or "sim").lower()
            if device not in INT8_DEVICES:
                raise BadInput(f"fpga: unknown device {self.options.device!r} for int8; valid: "
                               f"{', '.join(INT8_DEVICES)}")
            if device == "sim":
                return SimRunner(artifact)
        try:
            session = _session(artifact.model_path, self.options.threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BadInput(f"{artifact.model_path}: onnxruntime cannot load the model: {first_line(e)}") from None
        return OnnxRuntimeRunner(artifact, session)


class SimRunner:
    """The int8 artifact on the integer-only simulator: ``runner(clip (1, 3, T, H, W)) -> (1, classes)``."""

    def __init__(self, artifact: Artifact) -> None:
        from quant.intsim import Simulator

        self.artifact = artifact
        try:
            self._sim: Any = Simulator(artifact.model_path)
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - onnx raises several error types
            raise BadInput(f"{artifact.model_path}: the simulator cannot read the model: {first_line(e)}") from None

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        if self._sim is None:
            raise RuntimeError(f"{self.artifact.path}: runner is closed")
        return self._sim(check_clip(clip, self.artifact.input, self.artifact.path))

    def resources(self) -> dict[str, Any]:
        return self._sim.resources()

    def close(self) -> None:
        self._sim = None


def _calibration(calib: Iterable[np.ndarray] | None, variant: "Variant") -> tuple[list[np.ndarray], str]:
    """Calibration clips and pow2 method from the caller's ``calib``."""
    from quant.calib import CalibSet, calib_clips, check_clips

    if calib is None:
        raise BadInput("fpga int8: no calibration clips given (the caller passes them; edgevid compile reads "
                       "the shipped calibration set when --calib is absent)")
    clips, method = calib_clips(calib)
    check_clips(clips, variant.input_shape, getattr(calib, "path", "calibration clips"))
    if not clips:
        raise BadInput("fpga int8: no calibration clips")
    return clips, POW2_METHOD.get(method if isinstance(calib, CalibSet) else "percentile", "mse")


def _quantize(lowered: Any, clips: list[np.ndarray], method: str) -> tuple[Any, dict[str, Any]]:
    from quant.intsim import Simulator
    from quant.pow2 import quantize

    qdq, report = quantize(lowered, clips, method)
    res = Simulator(qdq).resources()
    notes = {**report.to_json(), "simulator": "quant.intsim: int8 x int8 -> int32, requantize by shifts, "
                                              "round half up (DPU), saturate to [-128, 127]",
             "resources": {k: v for k, v in res.items() if k != "layers"}}
    return qdq, notes


def _session(model: str | Path, threads: int | None) -> Any:
    """CPU session, ORT's default optimisation and spinning, ``threads`` intra-op threads."""
    return ort_session(model, threads=threads, spin=True)
