"""LiteRT (TFLite) target: a ``.tflite`` flatbuffer run by the LiteRT interpreter
with the XNNPACK CPU delegate.

Build side (optional extra ``pip install -e .[tflite]``, which brings litert-torch):
the torch model is lowered by :func:`edge.lower2d.to_2d` (XNNPACK has no 3D
convolution, and litert-torch crashes on X3D's depthwise Conv3d: every Conv3d,
BatchNorm3d and 3D pool becomes 2D ops on a (T, C, H, W) tensor, frames in the
batch axis), BatchNorm is folded into the convs, and litert-torch converts the
result (torch.export -> StableHLO -> TFLite, no TensorFlow).  litert-torch converts
PyTorch modules only: there is no ONNX -> .tflite path without TensorFlow, so
``compile`` refuses an ONNX file and needs the torch model (``edgevid compile
--model NAME``).

Precision: fp32; fp16 = the converted model's conv / fully-connected weights
stored as float16 (ai-edge-quantizer's float-casting recipe, half the file) and
dequantized once when XNNPACK loads them: compute stays fp32 on x86 CPUs.

int8 = full-integer static quantization: the fp32 flatbuffer is rewritten by
ai-edge-quantizer (LiteRT's quantizer) with its ``static_wi8_ai8`` recipe,
calibrated by running the calibration clips (a ``quant.calib.CalibSet``; default
the shipped calibration set) through the float model: int8 conv / FC weights
(symmetric per output channel), int8 activations per tensor, int32 bias; every op
of the lowered X3D (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, PAD,
SLICE, MEAN, ...) runs in int8 under XNNPACK.  The interface tensors are int8 too
(the recipe quantizes the graph input and output); the runner quantizes the float
clip and dequantizes the logits with their scale and zero point, so callers pass
float32 and get float32.  (litert-torch's own PT2E route - ``prepare_pt2e`` /
``convert_pt2e`` + ``QuantConfig`` - fails on the lowered model: the converter
rejects the temporal zero padding, "'tfl.pad' op quantization parameters violate
the same scale constraint", and the NHWC layout pass stops at "Attempting to
convert non-NHWC compatible node to NHWC: dequantize_per_tensor_1".)

Run side (torch-free): ``ai_edge_litert`` (LiteRT, the successor of
tflite-runtime, which no longer imports under numpy 2) or ``tflite_runtime``
(older boards); XNNPACK is the interpreter's default delegate, ``threads`` sets
its thread count.  Input (1, 3, T, H, W) float32, output (1, classes) logits.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from edge.core.errors import BadInput
from targets.base import Artifact, ModelSource, TensorSpec, check_clip
from targets.common import check_artifact, first_line
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
PRECISIONS = ("fp32", "fp16", "int8")
INT8_IO = ("int8",)  # interface tensors of the int8 model
INT8_IO_REASON = ("ai-edge-quantizer 0.10's static int8 recipe quantizes the graph input and output too (int8 "
                  "interface only); the runner quantizes the float clip and dequantizes the logits with the "
                  "tensors' own scale and zero point, so callers still pass float32 and get float32")
# TFLite ops the int8 recipe covers (ai-edge-quantizer's ALL_SUPPORTED); anything else would stay float
INT8_RECIPE = "static_wi8_ai8"
# Interpreter modules, best first: LiteRT, then the legacy tflite-runtime of older boards.
INTERPRETERS: tuple[str, ...] = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
CONVERTER = "litert_torch"
EXTRA_HINT = "tflite compile needs the tflite extra: pip install -e .[tflite]"
LOWER_REASON = "XNNPACK has no 3D convolution; compile lowers it"
POOL_REASON = "XNNPACK has no 3D pooling; compile lowers it"
# TFLite ops ai-edge-quantizer's fp16 weight recipe applies to (weights of everything else stay fp32)
FP16_OPS: tuple[str, ...] = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_FLATBUFFER_ID = b"TFL3"


def _interpreter_module() -> Any | None:
    """The first importable interpreter module of ``INTERPRETERS``, or None."""
    for name in INTERPRETERS:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        try:
            return importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - tflite_runtime 2.14 raises AttributeError/ImportError under numpy 2
            log.debug("%s does not import: %s", name, first_line(e))
    return None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _int8_params(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of an int8 interface tensor, None for a float one."""
    if np.dtype(detail["dtype"]) != np.int8:
        return None
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


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


def _calibration(calib: Iterable[np.ndarray] | None, variant: "Variant") -> tuple[list[np.ndarray], str]:
    """Calibration clips (default: the shipped calibration set) and where they came from."""
    from quant.calib import calib_clips, check_clips, read_calib

    if calib is None:
        calib = read_calib(None, variant.input_shape, progress=False)
    clips, _ = calib_clips(calib)
    where = str(getattr(calib, "path", "calibration clips"))
    check_clips(clips, variant.input_shape, where)
    if not clips:
        raise BadInput("tflite int8: no calibration clips")
    return clips, where


class TfliteTarget:
    name = "tflite"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ availability
    def available(self) -> bool:
        """True when a LiteRT interpreter imports (running needs nothing else)."""
        return _interpreter_module() is not None

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
        from targets.lowering.graph import attrs_of, infer, value_infos
        from targets.onnx_io import load_onnx

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
        """Lower (``edge.lower2d.to_2d``), fold BN, convert with litert-torch into
        ``workdir/model.tflite`` and write the artifact.  ``model`` must be the torch
        module (litert-torch does not read ONNX)."""
        if variant.precision not in PRECISIONS:
            raise BadInput(f"tflite: precision {variant.precision} is not supported "
                           f"(supported: {', '.join(PRECISIONS)})")
        io = str(getattr(self.options.quant, "io", None) or "int8")
        if variant.precision == "int8" and io not in INT8_IO:
            raise BadInput(f"tflite int8 interface {io!r} is not available: {INT8_IO_REASON}")
        if isinstance(model, (str, Path)):
            raise BadInput(f"{model}: the tflite target converts PyTorch modules with litert-torch, which has no "
                           "ONNX importer (ONNX -> .tflite would need TensorFlow); compile from the model "
                           "(edgevid compile --model NAME --target tflite)")
        if not self.can_compile():
            raise BadInput(EXTRA_HINT)
        import torch

        from edge.lower2d import fold_batchnorm, has_3d, to_2d

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
            clips, source = _calibration(calib, variant)
        self._convert(lowered, example, workdir / MODEL_FILE)
        if variant.precision == "int8":
            quant_notes = {**self._int8(workdir / MODEL_FILE, clips), "calibration": source}
        t2 = time.perf_counter()
        notes: dict[str, Any] = {
            "lowering": ("Conv3d/BatchNorm3d/3D pools -> 2D ops on (T, C, H, W), temporal taps as pad + slices "
                         "(edge.lower2d.to_2d, temporal='sum'), BatchNorm folded") if has_3d(model)
            else "none needed (no 3D modules)",
            "lower_s": round(t1 - t0, 2), "convert_s": round(t2 - t1, 2)}
        if variant.precision == "fp16":
            notes["fp16"] = self._fp16_weights(workdir / MODEL_FILE)
        if quant_notes:
            notes["quant"] = quant_notes
        tools = {"litert-torch": _version("litert-torch"), "torch": torch.__version__,
                 "ai-edge-litert": _version("ai-edge-litert")}
        return Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                               input=TensorSpec("clip", tuple(variant.input_shape)),
                               output=TensorSpec("logits", out_shape), model_file=MODEL_FILE, tools=tools,
                               notes=notes)

    @staticmethod
    def _convert(module: Any, example: Any, dest: Path) -> None:
        """litert-torch conversion of ``module`` at ``example``'s shape into ``dest``."""
        import litert_torch

        quiet = None if log.isEnabledFor(logging.DEBUG) else "n"  # its progress lines go to stdout
        try:
            with _env("LITERT_TORCH_SHOW_PROGRESS", quiet):
                litert_torch.convert(module, (example,)).export(str(dest))
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - torch.export and the MLIR converter raise many types
            raise BadInput(f"tflite: litert-torch could not convert the model: {first_line(e)}") from None
        log.info("converted to %s (%.1f MB)", dest, dest.stat().st_size / 1e6)

    @staticmethod
    def _int8(path: Path, clips: list[np.ndarray]) -> dict[str, Any]:
        """Rewrite ``path`` (the fp32 flatbuffer) as a full-integer int8 model calibrated on
        ``clips``: ai-edge-quantizer's static recipe (int8 weights, symmetric per output
        channel for conv/FC; int8 activations per tensor from min/max over the clips)."""
        try:
            from ai_edge_quantizer import quantizer, recipe
        except ImportError:
            raise BadInput(f"tflite int8 needs ai-edge-quantizer (part of the tflite extra); {EXTRA_HINT}") from None
        module = _interpreter_module()
        if module is None:
            raise BadInput("tflite int8 calibrates on the LiteRT interpreter: pip install ai-edge-litert")
        sig = module.Interpreter(model_path=str(path)).get_signature_list()
        key = next(iter(sig))
        name = sig[key]["inputs"][0]
        before = path.stat().st_size
        try:
            with _env("TQDM_DISABLE", "1"):  # the calibration's per-op progress bar (no switch in its API)
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

    @staticmethod
    def _fp16_weights(path: Path) -> str:
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

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> TfliteRunner:
        """Verify the artifact's hashes, then open the interpreter with XNNPACK."""
        check_artifact(artifact, self.name)
        module = _interpreter_module()
        if module is None:
            raise BadInput(f"{artifact.path}: {self.unavailable_reason()}")
        path = artifact.model_path
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != _FLATBUFFER_ID:
            raise BadInput(f"{path}: not a TFLite flatbuffer (no {_FLATBUFFER_ID.decode()} identifier)")
        try:
            interp = module.Interpreter(model_path=str(path), num_threads=self.options.threads)
            interp.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError
            raise BadInput(f"{path}: LiteRT cannot load the model (truncated or corrupt?): {first_line(e)}") from None
        runner = TfliteRunner(artifact, interp)
        if not runner.delegated:
            log.warning("%s: XNNPACK did not take the graph; running on LiteRT's reference kernels", path)
        return runner
