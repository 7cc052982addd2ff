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
parser's own errors are add

Modules: ``rules`` (:data:`TRT10`, ``check_onnx(proto) -> [reason]``), ``build``
(trtexec / Python-API engine builds), ``runner`` (:class:`TensorRtRunner`,
cuda-python), ``target`` (:class:`TensorRtTarget`).
"""
from targets.tensorrt.build import (JETPACK_TRTEXEC, WORKSPACE_BYTES, build_with_python_api, build_with_trtexec,
                                    find_trtexec, trtexec_command)
from targets.tensorrt.rules import TRT10, Rule, TrtOpSet, check_onnx
from targets.tensorrt.runner import TensorRtRunner
from targets.tensorrt.target import ENGINE_FILE, ONNX_FILE, PRECISIONS, TensorRtTarget

__all__ = ["ENGINE_FILE", "JETPACK_TRTEXEC", "ONNX_FILE", "PRECISIONS", "Rule", "TRT10", "TensorRtRunner",
           "TensorRtTarget", "TrtOpSet", "WORKSPACE_BYTES", "build_with_python_api", "build_with_trtexec",
           "check_onnx", "find_trtexec", "trtexec_command"]
