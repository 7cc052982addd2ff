"""TensorRT target (NVIDIA GPUs, Jetson): a serialized engine built from the
static-shape ONNX model.

Build: the TensorRT Python API (``trt.Builder`` -> network from ``trt.OnnxParser``
-> ``BuilderConfig`` with the FP16 / INT8 flag -> ``build_serialized_network``)
when the ``tensorrt`` package imports, else ``trtexec`` when found on PATH (or
at JetPack's /usr/src/tensorrt/bin/trtexec).  An engine is specific to the GPU
and TensorRT version that built it; both are recorded in ``artifact.json``.

Run: ``TensorRtRunner`` deserializes the engine and moves tensors with NVIDIA's
``cuda-python`` runtime bindings (``cuda.bindings.runtime``, as TensorRT's own
samples do): torch-free, numpy in and out, one stream, device buffers allocated
once at load.

Without TensorRT (this machine): ``available()`` is False with the reason;
``compile`` still writes and checks the ONNX model the engine would be built
from and writes an artifact with ``status: "unbuilt"``, ``model.onnx`` as its
model file and ``notes.engine = "not built: <reason>"``; ``load`` refuses it with
"<artifact>: TensorRT runtime not available on this machine: <reason>".

``check`` applies the constraints knowable without TensorRT (:data:`TRT10`):
static shapes, the ONNX-parser operator list and per-operator restrictions of
TensorRT 10 (onnx-tensorrt docs/operators.md, 10.x), the opset range, tensor
types, and INT64 constants outside the int32 range; with TensorRT installed the
parser's own errors are added.
"""
from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from edge.core.errors import BadInput, GateFailed
from quant.messages import first_line
from targets.base import Artifact, ModelSource, check_clip
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from edge.core.variant import Variant

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
PRECISIONS = ("fp32", "fp16", "int8")  # int8: explicit Q/DQ ONNX (quant.ort, TensorRT recipe)
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
WORKSPACE_BYTES = 1 << 30
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# ----------------------------------------------------------------------------- the rules, as data

class _Graph:
    """What a rule needs to look at: constants (initializers and Constant outputs)."""

    def __init__(self, proto: "onnx.ModelProto") -> None:
        from onnx import numpy_helper

        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(a.t)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _input(node: Any, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


@dataclass(frozen=True)
class Rule:
    """One restriction of an operator; ``violated(node, graph)`` is True when the node breaks it."""

    text: str
    violated: Callable[[Any, _Graph], bool]


def _not_const(i: int) -> Callable[[Any, _Graph], bool]:
    return lambda n, g: bool(_input(n, i)) and g.const(_input(n, i)) is None


def _nonzero_const(i: int) -> Callable[[Any, _Graph], bool]:
    def violated(n: Any, g: _Graph) -> bool:
        name = _input(n, i)
        if not name:
            return False
        v = g.const(name)
        return v is None or bool(np.any(v != 0))
    return violated


def _pool_rank(n: Any, g: _Graph) -> bool:
    return len(_attr(n, "kernel_shape", [])) not in (2, 3)


def _dilated(n: Any, g: _Graph) -> bool:
    return any(d != 1 for d in _attr(n, "dilations", []) or [])


_POOL = (Rule("2D or 3D pooling only", _pool_rank), Rule("dilations must be empty or all ones", _dilated))
_REDUCE = (Rule("`axes` must be an initializer", _not_const(1)),)
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass(frozen=True)
class TrtOpSet:
    """TensorRT's ONNX parser as data: supported ops with their restrictions."""

    version: str
    opsets: tuple[int, int]  # inclusive range of the default-domain opset
    ops: Mapping[str, tuple[Rule, ...]]
    types: frozenset[str]  # ONNX tensor element types TensorRT takes
    io_only_types: frozenset[str] = field(default_factory=frozenset)  # only as network input/output


# From onnx-tensorrt docs/operators.md (TensorRT 10.x, "Y" rows and their restrictions).  The opset
# range is the one every TensorRT 10 release parses: 10.0 documents opsets 9-20, later 10.x up to 24.
TRT10 = TrtOpSet(
    version="10.x",
    opsets=(9, 20),
    types=frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE", "INT32", "INT64", "INT8", "INT4", "UINT8",
                     "BOOL", "FLOAT8E4M3FN", "FLOAT4E2M1"}),
    io_only_types=frozenset({"UINT8"}),
    ops={
        **{op: () for op in (
            "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
            "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
            "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "DepthToSpace", "Div", "Einsum", "Elu",
            "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
            "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
            "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU", "HammingWindow", "HannWindow",
            "HardSigmoid", "HardSwish", "Identity", "If", "ImageScaler", "InstanceNormalization", "IsInf",
            "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN",
            "LpNormalization", "MatMul", "Max", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod",
            "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "Or", "Pad", "ParametricSoftplus", "Pow",
            "PRelu", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
            "Reciprocal", "Relu", "Reshape", "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh",
            "Scan", "Scatter", "ScatterElements", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
            "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt",
            "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose", "Trilu", "Upsample",
            "Where", "Xor")},
        **{op: _REDUCE for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                  "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
        "AveragePool": _POOL,
        "LpPool": (Rule("dilations must be empty or all ones", _dilated),),
        "MaxPool": (*_POOL, Rule("the `Indices` output is unsupported",
                                 lambda n, g: len(n.output) > 1 and bool(n.output[1]))),
        "Constant": (Rule("`sparse_value`, `value_string` and `value_strings` are unsupported",
                          lambda n, g: any(a.name in ("sparse_value", "value_string", "value_strings")
                                           for a in n.attribute)),),
        "CumSum": (Rule("`axis` must be a build-time constant", _not_const(1)),),
        "DequantizeLinear": (Rule("`x_zero_point` must be zero", _nonzero_const(2)),),
        "QuantizeLinear": (Rule("`y_zero_point` must be 0", _nonzero_const(2)),),
        "Dropout": (Rule("`training_mode` must be an initializer that is False", _nonzero_const(2)),),
        "Hardmax": (),
        "LayerNormalization": (Rule("only the first output `Y` is supported",
                                    lambda n, g: any(bool(o) for o in n.output[1:])),),
        "LSTM": (Rule("`input_forget` must be 0", lambda n, g: _attr(n, "input_forget", 0) != 0),
                 Rule("`layout` must be 0", lambda n, g: _attr(n, "layout", 0) != 0)),
        "OneHot": (Rule("`depth` must be a build-time constant", _not_const(1)),),
        "Resize": (
            Rule(f"coordinate_transformation_mode must be one of {', '.join(sorted(_RESIZE_COORD))}",
                 lambda n, g: _attr(n, "coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORD),
            Rule("mode must be nearest or linear",
                 lambda n, g: _attr(n, "mode", "nearest") not in ("nearest", "linear")),
            Rule(f"nearest_mode must be one of {', '.join(sorted(_RESIZE_NEAREST))}",
                 lambda n, g: _attr(n, "nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST),
            Rule("antialiasing is not supported", lambda n, g: _attr(n, "antialias", 0) != 0),
            Rule("keep_aspect_ratio_policy must be stretch",
                 lambda n, g: _attr(n, "keep_aspect_ratio_policy", "stretch") != "stretch")),
        "ScatterND": (Rule("`reduction` other than none is not supported",
                           lambda n, g: _attr(n, "reduction", "none") != "none"),),
        "Squeeze": (Rule("`axes` must be resolvable to a constant", _not_const(1)),),
        "Unsqueeze": (Rule("`axes` must be resolvable to a constant", _not_const(1)),),
        "STFT": (Rule("`frame_step` and `window` must be initializers",
                      lambda n, g: _not_const(1)(n, g) or _not_const(2)(n, g)),),
        "TopK": (Rule("`sorted` must be 1", lambda n, g: _attr(n, "sorted", 1) != 1),
                 Rule("`K` must be a constant less than 3840",
                      lambda n, g: g.const(_input(n, 1)) is None or int(np.max(g.const(_input(n, 1)))) >= 3840)),
    },
)


def check_onnx(proto: "onnx.ModelProto", opset: TrtOpSet = TRT10) -> list[str]:
    """Reasons TensorRT (``opset``) would refuse ``proto``, knowable without TensorRT.

    Each reason names the node (or tensor), its op and the rule.
    """
    import onnx

    reasons: list[str] = []
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    lo, hi = opset.opsets
    if version is None or not lo <= version <= hi:
        reasons.append(f"model: default-domain opset {version} outside TensorRT {opset.version}'s range {lo}-{hi}")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - inference is a best effort; inputs/outputs are still checked
        inferred = proto
    g = inferred.graph
    inits = {i.name for i in g.initializer}
    io_names = {v.name for v in g.input} | {v.name for v in g.output}
    for where, values in (("input", [v for v in g.input if v.name not in inits]), ("output", g.output),
                          ("tensor", g.value_info)):
        for v in values:
            t = v.type.tensor_type
            if not v.type.HasField("tensor_type"):
                reasons.append(f"{where} {v.name!r}: not a tensor (sequences/maps are unsupported)")
                continue
            type_name = onnx.TensorProto.DataType.Name(t.elem_type)
            if t.elem_type and type_name not in opset.types:
                reasons.append(f"{where} {v.name!r}: element type {type_name} is not supported by TensorRT")
            elif type_name in opset.io_only_types and v.name not in io_names:
                reasons.append(f"{where} {v.name!r}: {type_name} only as a network input or output")
            dims = t.shape.dim
            if where != "tensor" and not t.HasField("shape"):
                reasons.append(f"{where} {v.name!r}: no shape; edgevid builds static-shape engines")
            elif any(d.dim_param or (where != "tensor" and d.dim_value <= 0) for d in dims):
                shape = [d.dim_param or d.dim_value for d in dims]
                reasons.append(f"{where} {v.name!r}: dynamic shape {shape}; edgevid builds static-shape engines")
    graph = _Graph(proto)
    slice_bounds = {n.input[i] for n in proto.graph.node if n.op_type == "Slice" for i in (1, 2) if len(n.input) > i}
    for name, value in graph.consts.items():
        if value.dtype == np.int64 and value.size and name not in slice_bounds and (
                value.min() < INT32_MIN or value.max() > INT32_MAX):
            reasons.append(f"initializer {name!r} (INT64): values outside the int32 range; TensorRT before 10 "
                           "casts INT64 to INT32 and clamps (Slice starts/ends are exempt: clamping them is exact)")
    for node in proto.graph.node:
        label = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            reasons.append(f"{label}: custom domain {node.domain!r}; TensorRT needs a plugin for it")
            continue
        rules = opset.ops.get(node.op_type)
        if rules is None:
            reasons.append(f"{label}: not supported by the TensorRT {opset.version} ONNX parser")
            continue
        reasons.extend(f"{label}: {r.text}" for r in rules if r.violated(node, graph))
    return reasons


# ----------------------------------------------------------------------------- building

def find_trtexec() -> str | None:
    """``trtexec`` on PATH, else JetPack's default location, else None."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if Path(JETPACK_TRTEXEC).is_file() else None


def trtexec_command(trtexec: str, onnx_path: str | Path, engine_path: str | Path, precision: str) -> list[str]:
    """The trtexec command line that builds ``engine_path`` from ``onnx_path`` (no timing run)."""
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--skipInference",
           f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M"]
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        cmd.append("--int8")  # explicit quantization: the ONNX model carries Q/DQ nodes
    elif precision != "fp32":
        raise BadInput(f"tensorrt: unknown precision {precision!r}")
    return cmd


def build_with_trtexec(trtexec: str, onnx_path: Path, engine_path: Path, precision: str) -> str:
    """Run trtexec; returns the TensorRT version it reports ('' when it does not say)."""
    cmd = trtexec_command(trtexec, onnx_path, engine_path, precision)
    log.info("building TensorRT engine: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not engine_path.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise GateFailed(f"{onnx_path}: trtexec failed to build the engine (exit {proc.returncode}):\n{tail}")
    m = re.search(r"TensorRT version: ([0-9.]+)", proc.stdout)
    return m.group(1) if m else ""


def build_with_python_api(onnx_path: Path, engine_path: Path, precision: str) -> None:
    """Builder -> network from OnnxParser -> config (FP16/INT8 flag) -> serialized engine."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GateFailed(f"{onnx_path}: TensorRT's ONNX parser refused the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization (Q/DQ nodes), no calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GateFailed(f"{onnx_path}: TensorRT failed to build the engine (see the TensorRT log above)")
    engine_path.write_bytes(memoryview(serialized).tobytes())


def _parser_errors(onnx_path: Path) -> list[str]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return []
    return [f"TensorRT ONNX parser: {parser.get_error(i)}" for i in range(parser.num_errors)]


# ----------------------------------------------------------------------------- running

def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _cuda(result: tuple) -> Any:
    """Unwrap a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    err, *values = result
    if int(err.value if hasattr(err, "value") else err):
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else (values or None)


class TensorRtRunner:
    """A deserialized engine: ``runner(clip (1, 3, T, H, W) float32) -> logits (1, classes)``.

    Device buffers are allocated once; each call copies the clip in, enqueues the
    engine on one CUDA stream, copies the logits out and synchronises.
    """

    def __init__(self, artifact: Artifact, engine_bytes: bytes) -> None:
        import tensorrt as trt

        self.artifact = artifact
        self._cudart = cudart = _cudart()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BadInput(f"{artifact.model_path}: TensorRT {trt.__version__} cannot deserialize the engine "
                           f"(built with TensorRT {artifact.tools.get('tensorrt')} on "
                           f"{artifact.notes.get('gpu', 'an unknown GPU')}); recompile on this machine")
        self._context = self._engine.create_execution_context()
        self._stream = _cuda(cudart.cudaStreamCreate())
        self._buffers: dict[str, int] = {}
        self._outputs: dict[str, np.ndarray] = {}
        self._input = ""
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self._buffers[name] = _cuda(cudart.cudaMalloc(nbytes))
            self._context.set_tensor_address(name, self._buffers[name])
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._input = name
            else:
                self._outputs[name] = np.empty(shape, dtype)

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise RuntimeError(f"{self.artifact.path}: runner is closed")
        cudart = self._cudart
        x = check_clip(clip, self.artifact.input, self.artifact.path)
        _cuda(cudart.cudaMemcpyAsync(self._buffers[self._input], x.ctypes.data, x.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError(f"{self.artifact.path}: TensorRT execution failed")
        for name, out in self._outputs.items():
            _cuda(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name], out.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
        _cuda(cudart.cudaStreamSynchronize(self._stream))
        return next(iter(self._outputs.values())).copy()

    def close(self) -> None:
        if self._context is None:
            return
        for ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._runtime = None
        self._buffers = {}


# ----------------------------------------------------------------------------- the target

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
            if not _cuda(_cudart().cudaGetDeviceCount()):
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
            reasons = _parser_errors(Path(onnx_path))
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
            notes["gpu"] = _gpu_name()
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


def _gpu_name() -> str:
    try:
        cudart = _cudart()
        props = _cuda(cudart.cudaGetDeviceProperties(0))
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    except Exception as e:  # noqa: BLE001 - informative only
        return f"unknown ({first_line(e)})"
