"""ONNX Runtime target: the artifact is the static-shape ONNX model itself.

Execution providers: the CPU EP always; the CUDA and TensorRT EPs when the
installed onnxruntime has them (``onnxruntime.get_available_providers()``), in the
order TensorRT > CUDA > CPU.  ``TargetOptions.device`` narrows that: "cpu",
"cuda" (CUDA + CPU fallback) or "tensorrt" (TensorRT + CUDA + CPU fallback).
``TargetOptions.threads`` sets the intra-op thread count; graph optimisation
level is ORT_ENABLE_ALL.

Worker threads do not spin (``session.intra_op.allow_spinning = 0``).  With
spinning (ORT's default) the two intra-op workers of X3D-XS burn ~15 ms of CPU in
the 50 ms after each run (OpenVINO: ~1 ms), CPU that the video decoder running
beside the model, or the next runtime in a benchmark, needs.  Measured on the
shared 2-core machine (load ~6, X3D at 4x160 / 13x160, 2 threads, paired
alternating sessions, 10 pairs): p50 back to back 469 -> 333 ms (XS) and
662 -> 587 ms (S); with 50 ms between calls 326 -> 238 ms (XS) and
1225 -> 969 ms (S), spinning -> not.  On an idle dedicated CPU spinning may
shave the thread wake-up time off each of the ~600 parallel regions; measure
there before turning it back on.

Precision: fp32; fp16 converts weights and activations with
``onnxruntime.transformers.float16`` (input and output stay float32).  fp16 is
native on the CUDA/TensorRT EPs; the x86 CPU EP has no fp16 convolution kernels,
casts back to float32 around them and so computes in fp32 with fp16-rounded
weights (X3D-XS 4x160 here: 230 vs 208 ms p50, fp16 vs fp32).

Optimised-model cache: not kept.  Measured on X3D-XS/S at 4x160 / 13x160, two
threads, ORT 1.32 (median of 5 session creations on the shared 2-core machine):
creating the session from the plain ONNX at ORT_ENABLE_ALL takes 136 / 147 ms;
from a saved ORT_ENABLE_ALL-optimised model with optimisations off 90 / 95 ms;
from the ORT format 88 / 96 ms.  The saving (~50 ms, once per load) is small
next to one inference (~100-300 ms), and the ENABLE_ALL-optimised model contains
NCHWc layouts specific to the building CPU (ORT warns it "should only be used in
the same environment"), which breaks an artifact that is built on one machine
and run on another.  The artifact stays the portable ONNX.
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
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant
    from quant.settings import QuantSettings

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")
# Option device -> execution providers in priority order (CPU always last, as fallback).
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_DEFAULT_ORDER = DEVICE_PROVIDERS["tensorrt"]


class OnnxRuntimeRunner:
    """A loaded ONNX Runtime session: ``runner(clip (1, 3, T, H, W) float32) -> logits (1, classes)``."""

    def __init__(self, artifact: Artifact, session: Any) -> None:
        self.artifact = artifact
        self._session = session
        self.providers: list[str] = list(session.get_providers())
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError(f"{self.artifact.path}: runner is closed")
        x = check_clip(clip, self.artifact.input, self.artifact.path)
        return self._session.run([self._output], {self._input: x})[0]

    def close(self) -> None:
        self._session = None


class OnnxRuntimeTarget:
    name = "onnxruntime"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ availability
    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def unavailable_reason(self) -> str:
        return "" if self.available() else "onnxruntime is not installed (pip install onnxruntime)"

    def providers(self) -> list[str]:
        """Execution providers a session will ask for, best first (see module docstring)."""
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        device = (self.options.device or "").lower()
        if device:
            if device not in DEVICE_PROVIDERS:
                raise BadInput(f"onnxruntime: unknown device {self.options.device!r}; valid devices: "
                               f"{', '.join(DEVICE_PROVIDERS)}")
            wanted = DEVICE_PROVIDERS[device]
            if wanted[0] not in have:
                raise BadInput(f"onnxruntime: device {device!r} needs {wanted[0]}, which this onnxruntime "
                               f"{ort.__version__} lacks (it has {', '.join(sorted(have))})")
            return [p for p in wanted if p in have]
        return [p for p in _DEFAULT_ORDER if p in have]

    def _session(self, model: str | Path | bytes, providers: list[str] | None = None) -> Any:
        """Fully optimised, errors-only logging, no spinning (see the module docstring)."""
        return ort_session(model, threads=self.options.threads, providers=providers or self.providers())

    # ------------------------------------------------------------------ check
    def check(self, onnx_path: str | Path) -> list[str]:
        """Reasons ONNX Runtime refuses the model: a session is created on the CPU EP
        and a failure (unknown op, no kernel for a type, bad attribute) becomes the
        reason, naming the node when ONNX Runtime does."""
        from quant.onnx_io import load_onnx

        load_onnx(onnx_path)
        try:
            self._session(Path(onnx_path), ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            return [first_line(e)]
        return []

    # ------------------------------------------------------------------ compile
    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact:
        """Export (or copy) the ONNX model into ``workdir`` and write the artifact.

        fp16: float16 conversion, float32 input/output kept.  int8: static QDQ
        quantization (``quant.ort``) calibrated on ``calib`` (clips (1, 3, T, H, W) float32,
        or a ``quant.calib.CalibSet``, whose method is used).
        """
        import onnx
        import onnxruntime as ort

        from quant.onnx_io import io_specs, load_onnx
        from targets.onnx_io import prepare_onnx

        if variant.precision not in PRECISIONS:
            raise BadInput(f"onnxruntime: precision {variant.precision} is not supported yet "
                           f"(supported: {', '.join(PRECISIONS)})")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        path, notes = prepare_onnx(model, variant, workdir / MODEL_FILE)
        proto = load_onnx(path)
        spec_in, spec_out = io_specs(proto, path)
        if variant.precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16
            from onnxruntime.transformers.onnx_model import OnnxModel

            fp16 = OnnxModel(convert_float_to_float16(proto, keep_io_types=True))
            fp16.topological_sort()  # the converter appends the input casts after their consumers
            onnx.save_model(fp16.model, str(path))
            notes["fp16"] = ("weights and activations float16, input/output float32; native on the CUDA/"
                             "TensorRT EPs, computed in float32 via casts on the x86 CPU EP")
        elif variant.precision == "int8":
            notes["quant"] = quantize_qdq(path, spec_in, calib, tensorrt=False, settings=self.options.quant)
        reasons = self.check(path)
        if reasons:
            raise GateFailed(f"{variant.tag}: onnxruntime cannot run the model:\n  " + "\n  ".join(reasons))
        return Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                               input=spec_in, output=spec_out, model_file=MODEL_FILE,
                               tools={"onnxruntime": ort.__version__, "onnx": onnx.__version__},
                               notes=notes)

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> OnnxRuntimeRunner:
        """Verify the artifact's hashes and open a session on the best available EP."""
        check_artifact(artifact, self.name)
        try:
            session = self._session(artifact.model_path)
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001
            raise BadInput(f"{artifact.model_path}: onnxruntime cannot load the model: {first_line(e)}") from None
        shape = tuple(session.get_inputs()[0].shape)
        if shape != tuple(artifact.input.shape):
            raise BadInput(f"{artifact.path}: artifact.json says input shape {tuple(artifact.input.shape)}, "
                           f"{artifact.model_file} takes {shape}")
        runner = OnnxRuntimeRunner(artifact, session)
        log.info("loaded %s on %s", artifact.path, ", ".join(runner.providers))
        return runner


def quantize_qdq(path: Path, spec_in: Any, calib: Iterable[np.ndarray] | None, tensorrt: bool,
                 settings: "QuantSettings | None" = None) -> dict[str, Any]:
    """Replace the fp32 ONNX model at ``path`` by its int8 QDQ model (``quant.ort``),
    calibrated on ``calib``; ``settings.exclude`` (node names / op types / "depthwise")
    stay float, ``settings.calib_cache`` is reused or written.  Returns the recipe
    notes.  Shared with the tensorrt target."""
    from quant.calib import calib_clips, check_clips
    from quant.onnx_io import load_onnx
    from quant.ort import ort_recipe, quantize_onnx
    from quant.settings import QuantSettings, resolve_exclude

    clips, method = calib_clips(calib)
    if not clips:
        raise BadInput(f"{path.parent}: int8 needs calibration clips (compile(..., calib=clips) or --calib PATH)")
    check_clips(clips, spec_in.shape, "calibration")
    settings = settings or QuantSettings()
    exclude = resolve_exclude(load_onnx(path), settings.exclude) if settings.exclude else []
    fp32 = path.with_name("model.fp32.onnx")
    path.rename(fp32)
    try:
        return quantize_onnx(fp32, path, clips, ort_recipe(method, tensorrt=tensorrt), spec_in.name,
                             exclude=exclude, calib_cache=settings.calib_cache,
                             speed_rules=settings.speed_rules and not tensorrt)
    finally:
        fp32.unlink(missing_ok=True)
