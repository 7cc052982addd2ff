"""Static-shape ONNX export of any zoo model at any Variant, simplified with onnxslim.

One input ``clip`` of shape (B, 3, T, H, W) float32 and one output ``logits``
(B, num_classes), every dimension fixed (static shapes are what TensorRT engines,
FPGA compilers and XNNPACK want).  Exporters are tried in ``EXPORTERS`` order: the
TorchScript exporter first (it gives plain Conv/BatchNorm graphs in a second or
two), torch.export/dynamo second.  Weights stay inside the file (no external data)
for models under 2 GB.
"""
from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from edge.core.chatter import captured

log = logging.getLogger(__name__)

INPUT_NAME = "clip"
OUTPUT_NAME = "logits"
OPSET = 17
EXPORTERS: tuple[str, ...] = ("torchscript", "dynamo")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    exporter: str
    opset: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _export_torchscript(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    with warnings.catch_warnings(), captured("torch.onnx"):  # its progress lines go to the log
        warnings.simplefilter("ignore")
        # the dynamo exporter implements opset >= 18 only; down-conversion fails on Reduce ops
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=max(opset, 18),
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "m.onnx")
        program.save(f, external_data=False)
        return onnx.load(f)


_EXPORT_FNS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, opset: int = OPSET,
                simplify: bool = True, exporters: tuple[str, ...] = EXPORTERS) -> ExportResult:
    """Export ``model`` (eval mode, float32) for one fixed ``input_shape`` to ``path``.

    input_shape: (B, 3, T, H, W).  The graph is checked with ``onnx.checker`` and
    every value has a static shape.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    example = torch.randn(*input_shape)
    errors = []
    for name in exporters:
        try:
            with torch.no_grad():
                proto = _EXPORT_FNS[name](model, example, opset)
            break
        except Exception as e:  # noqa: BLE001 - fall back to the next exporter, reasons kept
            log.warning("ONNX exporter %s failed (%s); trying the next one", name, str(e).splitlines()[0])
            errors.append(f"{name}: {e}")
    else:
        raise RuntimeError("every ONNX exporter failed:\n" + "\n".join(errors))
    if simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    proto.doc_string = f"edgevid export ({name}, opset {opset})"
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, tmp, save_as_external_data=False)
    os.replace(tmp, path)
    (out_shape,) = [tuple(d.dim_value for d in o.type.tensor_type.shape.dim) for o in proto.graph.output]
    log.info("exported %s with %s exporter to %s", type(model).__name__, name, path)
    return ExportResult(path, name, opset, tuple(input_shape), out_shape)
