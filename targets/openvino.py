"""OpenVINO target: the artifact is OpenVINO IR (``model.xml`` + ``model.bin``) plus
the model compiled for the build device (``model.<device>.blob``) so that a load
on the same device and OpenVINO version skips compilation.

Front end: ONNX.  ``compile`` exports the torch module with ``targets.export`` and
converts the ONNX file with ``ov.convert_model(path)`` - the ONNX front end plus
OpenVINO's MOC transformations (Swish/HSwish/GELU fusion, ...).  ``core.read_model``
(the ONNX reader alone) gives the same fp32 speed but a graph on which NNCF int8
is barely faster than fp32 (X3D-S 0.84x instead of 0.53x, ``quant.openvino`` has
the table and ``python -m benchmarks.studies.openvino_int8`` re-measures it).  The
torch front end (``ov.convert_model(module, example_input=...)``) is not used: on
X3D it converts several times slower (X3D-S 63.5 s vs 3.8 s) to the same fp32
speed (paired ratio 1.03), its int8 is 0.86x the speed of ours on X3D-S, and it
cannot convert convnet2d_s (avg_pool2d with a computed kernel); the exported ONNX
file is shared with the other targets.

Compiled-model cache: measured load (read + compile, median of 5, 2 threads) on
the same machine: IR 592 / 765 ms (XS / S), ``core.import_model`` of the exported
blob 337 / 419 ms (from the ONNX file directly: 1036 / 1165 ms).  The blob is kept
(it roughly doubles the artifact's size) and used when the load device is the
build device and the OpenVINO version matches; anything else compiles the IR.
(A CACHE_DIR inside the artifact was 286 / 291 ms, but OpenVINO writes new cache
entries there on a miss, i.e. into a verified, possibly read-only artifact.)

Devices: ``TargetOptions.device`` ("CPU" default; "GPU"/"NPU" and any other name
in ``ov.Core().available_devices``).  Threads: INFERENCE_NUM_THREADS.
Precision: fp32 sets INFERENCE_PRECISION_HINT f32 (so CPUs with AMX do not
silently run bf16); fp16 stores fp16 weights in the IR (``compress_to_fp16``) and
asks for f16 inference, which devices without fp16 arithmetic (x86 CPUs without
AVX512-FP16/AMX-FP16, e.g. this machine) replace with f32; ``notes.inference_precision``
records what the build device actually used.
"""
from __future__ import annotations

import importlib.util
import logging
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from edge.core.errors import BadInput, GateFailed
from quant.messages import first_line
from targets.base import Artifact, ModelSource, check_clip
from targets.common import check_artifact
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant
    from quant.settings import QuantSettings

log = logging.getLogger(__name__)

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
PRECISIONS = ("fp32", "fp16", "int8")
_HINT = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # int8: FakeQuantize ops run as int8, the rest in f32
FRONT_END = "onnx"


def blob_file(device: str) -> str:
    return f"model.{device.lower()}.blob"


class OpenVinoRunner:
    """A compiled OpenVINO model: ``runner(clip (1, 3, T, H, W) float32) -> logits (1, classes)``.

    ``loaded_from`` is "blob" (imported precompiled model) or "ir" (compiled at load).
    """

    def __init__(self, artifact: Artifact, compiled: Any, device: str, loaded_from: str) -> None:
        shape = tuple(compiled.input(0).get_shape())
        if shape != tuple(artifact.input.shape):
            raise BadInput(f"{artifact.path}: artifact.json says input shape {tuple(artifact.input.shape)}, "
                           f"the compiled model takes {shape}")
        self.artifact = artifact
        self.device = device
        self.loaded_from = loaded_from
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        if self._request is None:
            raise RuntimeError(f"{self.artifact.path}: runner is closed")
        x = check_clip(clip, self.artifact.input, self.artifact.path)
        out = self._request.infer({0: x})
        return np.array(out[0], copy=True)  # the request reuses its output buffer

    def close(self) -> None:
        self._request = None
        self._compiled = None


class OpenVinoTarget:
    name = "openvino"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ availability
    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def unavailable_reason(self) -> str:
        return "" if self.available() else "openvino is not installed (pip install openvino)"

    def device(self, core: Any) -> str:
        """The device asked for (default CPU), checked against ``core.available_devices``."""
        name = (self.options.device or "CPU").upper()
        have = list(core.available_devices)
        if name not in have and name.split(".")[0] not in have:
            raise BadInput(f"openvino: device {name!r} is not available here; available devices: {', '.join(have)}")
        return name

    def compile_config(self, precision: str) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _HINT[precision]}
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        return config

    # ------------------------------------------------------------------ check
    def check(self, onnx_path: str | Path) -> list[str]:
        """Reasons OpenVINO refuses the model: ONNX front-end conversion failures
        (unsupported ONNX ops), then ops the device plugin does not support
        (``core.query_model``), each named with its type."""
        import openvino as ov

        from quant.onnx_io import load_onnx

        load_onnx(onnx_path)
        core = ov.Core()
        device = self.device(core)
        model, reasons = _read(core, onnx_path)
        return reasons if model is None else _unsupported(core, model, device)

    # ------------------------------------------------------------------ compile
    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact:
        """ONNX -> IR (+ compiled blob for the build device) in ``workdir``.

        int8: ``nncf.quantize`` (``quant.openvino``) on the ov.Model, calibrated on
        ``calib`` (clips (1, 3, T, H, W) float32, or a ``quant.calib.CalibSet``).
        """
        import openvino as ov

        from quant.onnx_io import io_specs, load_onnx
        from targets.onnx_io import prepare_onnx

        if variant.precision not in PRECISIONS:
            raise BadInput(f"openvino: precision {variant.precision} is not supported yet "
                           f"(supported: {', '.join(PRECISIONS)})")
        core = ov.Core()
        device = self.device(core)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="edgevid-ov-") as tmp:
            onnx_path, notes = prepare_onnx(model, variant, Path(tmp) / "model.onnx")
            spec_in, spec_out = io_specs(load_onnx(onnx_path), onnx_path)
            ov_model, reasons = _read(core, onnx_path)
            reasons = reasons if ov_model is None else _unsupported(core, ov_model, device)
            if reasons:
                raise GateFailed(f"{variant.tag}: openvino cannot run {len(reasons)} op(s):\n  "
                                 + "\n  ".join(reasons))
            if variant.precision == "int8":
                ov_model, notes["quant"] = _quantize(ov_model, spec_in, calib, onnx_path, self.options.quant)
            ov.save_model(ov_model, str(workdir / MODEL_FILE), compress_to_fp16=variant.precision == "fp16")
        compiled = core.compile_model(str(workdir / MODEL_FILE), device, self.compile_config(variant.precision))
        notes.update(front_end=FRONT_END, device=device,
                     inference_precision=_type_name(compiled.get_property("INFERENCE_PRECISION_HINT")))
        extra = [WEIGHTS_FILE]
        try:
            blob = compiled.export_model()
        except Exception as e:  # noqa: BLE001 - devices without export support
            notes["blob"] = f"not exported: {first_line(e)}"
        else:
            (workdir / blob_file(device)).write_bytes(blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob))
            extra.append(blob_file(device))
            notes["blob"] = blob_file(device)
        return Artifact.create(workdir, target=self.name, variant=variant.tag, precision=variant.precision,
                               input=spec_in, output=spec_out, model_file=MODEL_FILE,
                               tools={"openvino": ov.get_version()}, extra_files=extra, notes=notes)

    # ------------------------------------------------------------------ load
    def load(self, artifact: Artifact) -> OpenVinoRunner:
        """Verify hashes; import the precompiled blob when it was built for this device
        and OpenVINO version, else compile the IR."""
        import openvino as ov

        check_artifact(artifact, self.name)
        core = ov.Core()
        device = self.device(core)
        config = self.compile_config(artifact.precision if artifact.precision in _HINT else "fp32")
        blob = artifact.path / blob_file(device)
        if blob_file(device) in artifact.files and artifact.tools.get("openvino") == ov.get_version():
            try:
                compiled = core.import_model(blob.read_bytes(), device, config)
                return OpenVinoRunner(artifact, compiled, device, "blob")
            except Exception as e:  # noqa: BLE001 - incompatible blob: fall back to the IR
                log.warning("%s: precompiled blob refused (%s); compiling the IR", blob, first_line(e))
        try:
            compiled = core.compile_model(str(artifact.model_path), device, config)
        except Exception as e:  # noqa: BLE001
            raise BadInput(f"{artifact.model_path}: openvino cannot load the model: {first_line(e)}") from None
        return OpenVinoRunner(artifact, compiled, device, "ir")


def _read(core: Any, onnx_path: str | Path) -> tuple[Any, list[str]]:
    """(ov.Model, []) from ``ov.convert_model`` (ONNX front end + MOC transformations:
    Swish, GELU, ... fused), or (None, reasons) when it cannot convert.  ``core`` is
    unused: ``core.read_model`` skips the MOC passes (see the module doc)."""
    import openvino as ov

    try:
        return ov.convert_model(str(onnx_path)), []
    except Exception as e:  # noqa: BLE001 - OpConversionFailure, GeneralFailure
        return None, _front_end_reasons(e)


def _unsupported(core: Any, model: Any, device: str) -> list[str]:
    """A reason per op the device plugin does not support (``core.query_model``)."""
    supported = core.query_model(model, device)
    return [f"node {op.get_friendly_name()!r} ({op.get_type_name()}): not supported by the {device} plugin"
            for op in model.get_ops() if op.get_friendly_name() not in supported]


def _front_end_reasons(e: BaseException) -> list[str]:
    """OpenVINO's conversion report as reasons: one per unconverted op type, else the
    informative lines of the message (its 'Exception from file:line' lines dropped)."""
    text = str(e)
    m = re.search(r"No conversion rule found for operations: (.*)", text)
    if m:
        return [f"op {op.strip()}: no conversion rule in the OpenVINO ONNX front end"
                for op in m.group(1).split(",") if op.strip()]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()
             and not re.match(r"(Exception from|Check '.*' failed at|FrontEnd API failed)", ln.strip())]
    return [f"OpenVINO ONNX front end: {' '.join(lines) or first_line(e)}"]


def _type_name(t: Any) -> str:
    """'f32' for an ``ov.Type`` (its ``to_string``), else ``str``."""
    return t.to_string() if hasattr(t, "to_string") else str(t)


def _quantize(model: Any, spec_in: Any, calib: Iterable[np.ndarray] | None, onnx_path: Path,
              settings: "QuantSettings | None") -> tuple[Any, dict[str, Any]]:
    """The NNCF int8 model of ``model`` and its notes (see ``quant.openvino``);
    ``settings``: preset, subset size, and the ONNX nodes (names / op types /
    "depthwise", resolved on ``onnx_path``) kept float via ``ignored_scope``."""
    from quant.calib import calib_clips, check_clips, default_method
    from quant.onnx_io import load_onnx
    from quant.openvino import NncfQuant, ov_names, quantize_ov
    from quant.settings import QuantSettings, resolve_exclude

    clips, method = calib_clips(calib, default=default_method("openvino"))
    if not clips:
        raise BadInput("openvino: int8 needs calibration clips (compile(..., calib=clips) or --calib PATH)")
    check_clips(clips, spec_in.shape, "calibration")
    settings = settings or QuantSettings()
    exclude = resolve_exclude(load_onnx(onnx_path), settings.exclude) if settings.exclude else []
    config = NncfQuant(method=method, preset=settings.preset, ignored_scope=tuple(ov_names(model, exclude)),
                       subset_size=settings.subset_size)
    labelled = getattr(calib, "labelled", None)
    if settings.max_drop is not None and labelled is None:
        raise BadInput("openvino: accuracy-aware int8 (max_drop) needs labelled held-out clips "
                       "(CalibSet.labelled; --accuracy-data)")
    qmodel, notes = quantize_ov(model, clips, config, labelled, settings.max_drop)
    notes["excluded_nodes"] = exclude
    return qmodel, notes
