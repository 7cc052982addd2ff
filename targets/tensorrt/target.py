"""The ``tensorrt`` target (see :mod:`targets.tensorrt`).

API: ``TensorRtTarget(options)``: ``available()`` / ``unavailable_reason()``,
``check(onnx_path) -> [reason]``, ``compile(model, variant, workdir, calib=None)
-> Artifact`` (checked ONNX always; the engine when a builder is here, else
``status: "unbuilt"``), ``load(artifact) -> TensorRtRunner``.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from edge.core.errors import BadInput, GateFailed
from quant.messages import first_line
from targets.base import Artifact, ModelSource
from targets.registry import TargetOptions
from targets.tensorrt.build import build_with_python_api, build_with_trtexec, find_trtexec, parser_errors
from targets.tensorrt.rules import check_onnx
from targets.tensorrt.runner import TensorRtRunner, cuda_runtime, cuda_unwrap, gpu_name

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
PRECISIONS = ("fp32", "fp16", "int8")  # int8: explicit Q/DQ ONNX (quant.ort, TensorRT recipe)


class TensorRtTarget:
    name = "tensorrt"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    def available(self) -> bool:
        return not self.unavailable_reason()

    def unavailable_reason(self) -> str:
        """Why engines cannot be built and run here ('' when they can)."""
        if not _has_module("tensorrt"):
            extra = f" (trtexec found at {find_trtexec()}: engines can be built, not run)" if find_trtexec() else ""
            return f"TensorRT is not installed: no `tensorrt` Python package{extra}"
        if not (_has_module("cuda.bindings") or _has_module("cuda.cudart")):
            return "cuda-python is not installed (pip install cuda-python): the runner needs it for GPU memory"
        try:
            if not cuda_unwrap(cuda_runtime().cudaGetDeviceCount()):
                return "no CUDA GPU visible"
        except Exception as e:  # noqa: BLE001 - driver missing or broken
            return f"no usable CUDA GPU ({first_line(e)})"
        return ""

    def _builder(self) -> str | None:
        """'python' (TensorRT Python API), a trtexec path, or None when no builder is here."""
        if _has_module("tensorrt"):
            return "python"
        return find_trtexec()

    # ------------------------------------------------------------------ check
    def check(self, onnx_path: str | Path) -> list[str]:
        from quant.onnx_io import load_onnx

        reasons = check_onnx(load_onnx(onnx_path))
        if not reasons and _has_module("tensorrt"):
            reasons = parser_errors(Path(onnx_path))
        return reasons

    # ------------------------------------------------------------------ compile
    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact:
        """ONNX (always, checked) + engine (when a builder is here) in ``workdir``."""
        import onnx

        from quant.onnx_io import io_specs, load_onnx
        from targets.onnx_io import prepare_onnx

        if variant.precision not in PRECISIONS:
            raise BadInput(f"tensorrt: precision {variant.precision} is not supported yet "
                           f"(supported: {', '.join(PRECISIONS)})")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        onnx_path, notes = prepare_onnx(model, variant, workdir / ONNX_FILE)
        spec_in, spec_out = io_specs(load_onnx(onnx_path), onnx_path)
        if variant.precision == "int8":
            from targets.onnxruntime import quantize_qdq

            notes["quant"] = quantize_qdq(onnx_path, spec_in, calib, tensorrt=True)
        reasons = self.check(onnx_path)
        if reasons:
            raise GateFailed(f"{variant.tag}: TensorRT cannot take {len(reasons)} node(s)/tensor(s):\n  "
                             + "\n  ".join(reasons))
        tools = {"onnx": onnx.__version__}
        builder = self._builder()
        if builder is None:
            notes["engine"] = f"not built: {self.unavailable_reason()}"
            art = Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                                  input=spec_in, output=spec_out, model_file=ONNX_FILE, tools=tools, notes=notes)
            log.warning("TensorRT engine not built (%s); the artifact holds the checked ONNX model",
                        self.unavailable_reason())
            return art.with_(status="unbuilt").write()
        engine_path = workdir / ENGINE_FILE
        if builder == "python":
            import tensorrt as trt

            build_with_python_api(onnx_path, engine_path, variant.precision)
            tools["tensorrt"] = trt.__version__
            notes["engine"] = "built with the TensorRT Python API"
            notes["gpu"] = gpu_name()
        else:
            version = build_with_trtexec(builder, onnx_path, engine_path, variant.precision)
            if version:
                tools["tensorrt"] = version
            notes["engine"] = f"built with {builder}"
        return Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                               input=spec_in, output=spec_out, model_file=ENGINE_FILE, tools=tools,
                               extra_files=[ONNX_FILE], notes=notes)

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> TensorRtRunner:
        artifact.verify()
        if artifact.target != self.name:
            raise BadInput(f"{artifact.path}: artifact was compiled for target {artifact.target!r}, not 'tensorrt'")
        reason = self.unavailable_reason()
        if reason:
            raise BadInput(f"{artifact.path}: TensorRT runtime not available on this machine: {reason}")
        if artifact.status == "unbuilt" or artifact.model_file != ENGINE_FILE:
            raise BadInput(f"{artifact.path}: holds no TensorRT engine ({artifact.notes.get('engine', 'unbuilt')});"
                           " recompile on a machine with TensorRT")
        return TensorRtRunner(artifact, artifact.model_path.read_bytes())


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
