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

``load`` runs the lowered model on ONNX Runtime's CPU provider: a functional
stand-in for the board (fp32).  The integer simulator of the power-of-two int8
datapath arrives with the quantization issue.  Needs only onnx + onnxruntime.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from edge.errors import BadInput, GateFailed
from targets.base import Artifact, ModelSource
from targets.common import check_artifact, first_line
from targets.opset import FPGA_OPSET
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.variant import Variant
    from targets.onnxruntime import OnnxRuntimeRunner

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32",)
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

        from targets.checker import check
        from targets.lowering import lower
        from targets.lowering.fidelity import lowering_fidelity
        from targets.onnx_io import io_specs, load_onnx, prepare_onnx

        if variant.precision not in PRECISIONS:
            raise BadInput(f"fpga: precision {variant.precision} is not supported yet (supported: "
                           f"{', '.join(PRECISIONS)}; power-of-two int8 arrives with the quantization issue)")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        source, notes = prepare_onnx(model, variant, workdir / "source.onnx")
        try:
            proto = load_onnx(source)
            lowered = lower(proto, self.opset, hard_activations=self.options.hard_activations)
            path = workdir / MODEL_FILE
            onnx.save_model(lowered, str(path))
            fidelity = lowering_fidelity(proto, lowered, calib)
        finally:
            source.unlink(missing_ok=True)
        spec_in, spec_out = io_specs(lowered, path)
        reasons = check(lowered, self.opset)
        notes = {**notes, "opset": self.opset.name,
                 "lowering": {"hard_activations": self.options.hard_activations, "passes": lowered.doc_string,
                              "vs_source": fidelity}}
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
    def load(self, artifact: Artifact) -> "OnnxRuntimeRunner":
        """Verify the artifact and run the lowered model on ONNX Runtime (CPU provider)."""
        from targets.onnxruntime import OnnxRuntimeRunner

        check_artifact(artifact, self.name)
        try:
            session = _session(artifact.model_path, self.options.threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BadInput(f"{artifact.model_path}: onnxruntime cannot load the model: {first_line(e)}") from None
        return OnnxRuntimeRunner(artifact, session)


def _session(model: str | Path, threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
