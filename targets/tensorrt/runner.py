"""TensorRT runner: a deserialized engine run with cuda-python's runtime bindings
(torch-free; numpy in and out, one stream, device buffers allocated at load).

API: ``TensorRtRunner(artifact, engine_bytes)``: ``runner(clip (1, 3, T, H, W)
float32) -> logits (1, classes)``; ``cuda_runtime()`` (``cuda.bindings.runtime`` or the
older ``cuda.cudart``), ``cuda_unwrap(result)`` (unwraps ``(err, *values)``),
``gpu_name() -> str``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge.core.errors import BadInput
from quant.messages import first_line
from targets.base import Artifact, check_clip

def cuda_runtime() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def cuda_unwrap(result: tuple) -> Any:
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
        self._cudart = cudart = cuda_runtime()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BadInput(f"{artifact.model_path}: TensorRT {trt.__version__} cannot deserialize the engine "
                           f"(built with TensorRT {artifact.tools.get('tensorrt')} on "
                           f"{artifact.notes.get('gpu', 'an unknown GPU')}); recompile on this machine")
        self._context = self._engine.create_execution_context()
        self._stream = cuda_unwrap(cudart.cudaStreamCreate())
        self._buffers: dict[str, int] = {}
        self._outputs: dict[str, np.ndarray] = {}
        self._input = ""
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self._buffers[name] = cuda_unwrap(cudart.cudaMalloc(nbytes))
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
        cuda_unwrap(cudart.cudaMemcpyAsync(self._buffers[self._input], x.ctypes.data, x.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError(f"{self.artifact.path}: TensorRT execution failed")
        for name, out in self._outputs.items():
            cuda_unwrap(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name], out.nbytes,
                                                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
        cuda_unwrap(cudart.cudaStreamSynchronize(self._stream))
        return next(iter(self._outputs.values())).copy()

    def close(self) -> None:
        if self._context is None:
            return
        for ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._runtime = None
        self._buffers = {}


def gpu_name() -> str:
    try:
        cudart = cuda_runtime()
        props = cuda_unwrap(cudart.cudaGetDeviceProperties(0))
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    except Exception as e:  # noqa: BLE001 - informative only
        return f"unknown ({first_line(e)})"
