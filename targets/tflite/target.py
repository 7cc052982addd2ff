"""The ``tflite`` target (see :mod:`targets.tflite` for the build and run sides).

API: ``TfliteTarget(options)``: ``available()``, ``can_compile()``,
``check(onnx_path) -> [reason]`` (3D convs / pools, dynamic shapes, custom ops),
``compile(torch_module, variant, workdir, calib=None) -> Artifact`` (lower to 2D,
fold BN, convert; fp16 / int8 rewrites), ``load(artifact) -> TfliteRunner``.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from edge.core.chatter import captured
from edge.core.errors import BadInput
from quant.messages import first_line
from quant.spec import TensorSpec
from targets.base import Artifact, ModelSource
from targets.common import check_artifact
from targets.registry import TargetOptions
from targets.tflite.convert import EXTRA_HINT, calibration, convert, fp16_weights, quantize_int8, version
from targets.tflite.runner import FLATBUFFER_ID, TfliteRunner, interpreter_module

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
PRECISIONS = ("fp32", "fp16", "int8")
# ai-edge-quantizer 0.10's static int8 recipe quantizes the graph input and output too (int8 interface
# only); the runner quantizes the float clip and dequantizes the logits with the tensors' own scale and
# zero point, so callers still pass float32 and get float32.
CONVERTER = "litert_torch"
LOWER_REASON = "XNNPACK has no 3D convolution; compile lowers it"
POOL_REASON = "XNNPACK has no 3D pooling; compile lowers it"


class TfliteTarget:
    name = "tflite"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ availability
    def available(self) -> bool:
        """True when a LiteRT interpreter imports (running needs nothing else)."""
        return interpreter_module() is not None

    def unavailable_reason(self) -> str:
        if self.available():
            return ""
        return ("no LiteRT interpreter: pip install ai-edge-litert (or tflite-runtime on boards without it; "
                "tflite-runtime 2.14 does not import under numpy 2)")

    def can_compile(self) -> bool:
        """True when the converter (litert-torch, the tflite extra) is installed."""
        return importlib.util.find_spec(CONVERTER) is not None

    # ------------------------------------------------------------------ check
    def check(self, onnx_path: str | Path) -> list[str]:
        """What LiteRT/XNNPACK cannot take, knowable from an ONNX graph: 3D convolutions
        and pools (lowered by ``compile``), dynamic input shapes, custom-domain ops."""
        from quant.onnx_io import load_onnx
        from quant.onnx_io import attrs_of
        from targets.lowering.graph import infer, value_infos

        model = load_onnx(onnx_path)
        info = value_infos(infer(model))
        reasons = []
        consts = {i.name for i in model.graph.initializer}
        for v in model.graph.input:
            vi = info.get(v.name)
            if v.name not in consts and (vi is None or not vi.static):
                shape = "unknown" if vi is None or vi.shape is None else \
                    "(" + ", ".join("?" if d is None else str(d) for d in vi.shape) + ")"
                reasons.append(f"graph input '{v.name}' {shape}: dynamic shape; the tflite artifact is built "
                               "for one static input shape")
        for node in model.graph.node:
            where = f"node '{node.name or node.output[0]}' ({node.op_type})"
            if node.domain not in ("", "ai.onnx"):
                reasons.append(f"{where}: custom domain {node.domain!r} has no LiteRT builtin")
                continue
            if node.op_type not in ("Conv", "ConvTranspose", "AveragePool", "MaxPool", "LpPool"):
                continue
            kernel = attrs_of(node).get("kernel_shape")
            if kernel is None and node.op_type.startswith("Conv") and len(node.input) > 1:
                w = info.get(node.input[1])
                kernel = w.shape[2:] if w is not None and w.shape is not None else None
            if kernel is None:
                x = info.get(node.input[0])
                kernel = (None,) * (len(x.shape) - 2) if x is not None and x.shape is not None else ()
            if len(kernel) == 3:
                dims = "x".join("?" if k is None else str(k) for k in kernel)
                kind = "convolution" if node.op_type.startswith("Conv") else "pooling"
                rule = {"Conv": LOWER_REASON, "AveragePool": POOL_REASON, "MaxPool": POOL_REASON}.get(
                    node.op_type, f"XNNPACK has no 3D {node.op_type}, and compile does not lower it")
                reasons.append(f"{where}: 3-D {kind} (kernel {dims}); {rule}")
        return reasons

    # ------------------------------------------------------------------ compile
    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact:
        """Lower (``targets.tflite.lower2d.to_2d``), fold BN, convert with litert-torch into
        ``workdir/model.tflite`` and write the artifact.  ``model`` must be the torch
        module (litert-torch does not read ONNX)."""
        if variant.precision not in PRECISIONS:
            raise BadInput(f"tflite: precision {variant.precision} is not supported "
                           f"(supported: {', '.join(PRECISIONS)})")
        if isinstance(model, (str, Path)):
            raise BadInput(f"{model}: the tflite target converts PyTorch modules with litert-torch, which has no "
                           "ONNX importer (ONNX -> .tflite would need TensorFlow); compile from the model "
                           "(edgevid compile --model NAME --target tflite)")
        if not self.can_compile():
            raise BadInput(EXTRA_HINT)
        import torch

        from targets.tflite.fold import fold_batchnorm
        from targets.tflite.lower2d import has_3d, to_2d

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        model = model.eval()
        t0 = time.perf_counter()
        lowered = to_2d(model, variant.frames, variant.resolution)
        if isinstance(lowered, torch.fx.GraphModule):
            fold_batchnorm(lowered)
        example = torch.zeros(variant.input_shape)
        with torch.no_grad():
            out_shape = tuple(lowered(example).shape)
        t1 = time.perf_counter()
        quant_notes: dict[str, Any] = {}
        clips: list[np.ndarray] = []
        if variant.precision == "int8":
            clips, source, method = calibration(calib, variant)
        convert(lowered, example, workdir / MODEL_FILE)
        if variant.precision == "int8":
            quant_notes = {**quantize_int8(workdir / MODEL_FILE, clips, method), "calibration": source}
        t2 = time.perf_counter()
        notes: dict[str, Any] = {
            "lowering": ("Conv3d/BatchNorm3d/3D pools -> 2D ops on (T, C, H, W), temporal taps as pad + slices "
                         "(targets.tflite.lower2d.to_2d, temporal='sum'), BatchNorm folded") if has_3d(model)
            else "none needed (no 3D modules)",
            "lower_s": round(t1 - t0, 2), "convert_s": round(t2 - t1, 2)}
        if variant.precision == "fp16":
            notes["fp16"] = fp16_weights(workdir / MODEL_FILE)
        if quant_notes:
            notes["quant"] = quant_notes
        tools = {"litert-torch": version("litert-torch"), "torch": torch.__version__,
                 "ai-edge-litert": version("ai-edge-litert")}
        return Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                               input=TensorSpec("clip", tuple(variant.input_shape)),
                               output=TensorSpec("logits", out_shape), model_file=MODEL_FILE, tools=tools,
                               notes=notes)

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> TfliteRunner:
        """Verify the artifact's hashes, then open the interpreter with XNNPACK."""
        check_artifact(artifact, self.name)
        module = interpreter_module()
        if module is None:
            raise BadInput(f"{artifact.path}: {self.unavailable_reason()}")
        path = artifact.model_path
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != FLATBUFFER_ID:
            raise BadInput(f"{path}: not a TFLite flatbuffer (no {FLATBUFFER_ID.decode()} identifier)")
        try:
            with captured("ai_edge_litert"):  # "INFO: Created TensorFlow Lite XNNPACK delegate": to the log
                interp = module.Interpreter(model_path=str(path), num_threads=self.options.threads)
                interp.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError
            raise BadInput(f"{path}: LiteRT cannot load the model (truncated or corrupt?): {first_line(e)}") from None
        runner = TfliteRunner(artifact, interp)
        if not runner.delegated:
            log.warning("%s: XNNPACK did not take the graph; running on LiteRT's reference kernels", path)
        return runner
