"""The one place an onnxruntime ``InferenceSession`` is built.

``ort_session(model, *, threads=None, optimise=True, providers=None, spin=False)``
takes a path, serialized bytes or an ``onnx.ModelProto`` and returns a session that
logs errors only.  ``optimise=False`` disables graph optimisation (to read
intermediate tensors as exported); ``spin=False`` turns off intra-op spinning, which
on a small shared CPU steals the cores the caller is measuring; ``providers``
defaults to the CPU provider.  onnxruntime is imported lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import onnx

OrtModel = Union[str, Path, bytes, "onnx.ModelProto"]


def ort_session(model: OrtModel, *, threads: int | None = None, optimise: bool = True,
                providers: Sequence[str] | None = None, spin: bool = False) -> Any:
    """An onnxruntime session over ``model`` (see the module docstring)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = int(threads)
    if isinstance(model, Path):
        data: str | bytes = str(model)
    elif isinstance(model, (str, bytes)):
        data = model
    else:
        data = model.SerializeToString()
    return ort.InferenceSession(data, so, providers=list(providers or ["CPUExecutionProvider"]))
