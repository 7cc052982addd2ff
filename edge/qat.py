"""The job behind ``edgevid qat``: QAT of a zoo model for a target, then its int8 artifact.

    prepare(source onnx.ModelProto, target, hard_activations, method, rounding) -> quant.qat.GraphNet
        (fpga: lowered with the fpga op set first; onnxruntime/openvino: BN folded)
    fold_bn(model) -> model with BatchNormalization folded into the convolutions (targets.lowering)
    qat_job(model, target, data, out, *, ckpt, width, resolution, frames, cfg, calib, calib_clips,
            calib_method, val, hard_activations, resume) -> summary dict (the CLI's JSON)

The QAT machinery on ONNX graphs (GraphNet, fake quantization, finetune) is :mod:`quant.qat`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edge.compile import build_from_checkpoint
from edge.core.errors import BadInput
from targets.export import export_onnx
from edge.models import create_model
from edge.checkpoint import variant_for
from edge.train import build_cache
from quant.calib import read_calib
from quant.fidelity import fidelity
from quant.qat import TARGET_SCHEME, GraphNet, QatConfig, finetune, qat_graph
from targets.lowering import lower
from targets.lowering.batchnorm import fold_batchnorm
from targets.lowering.graph import Graph
from targets.fpga import POW2_METHOD
from targets.opset import FPGA_OPSET
from targets.registry import TargetOptions, get_target

log = logging.getLogger(__name__)


def fold_bn(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with BatchNormalization folded into the preceding convolutions (as the quantizers do)."""
    g = Graph(model)
    fold_batchnorm(g, None)  # type: ignore[arg-type]
    return g.to_model()


def prepare(source: onnx.ModelProto, target: str, hard_activations: bool = True,
            method: str = "mse", rounding: str = "half_up") -> GraphNet:
    """The QAT module for ``target`` from the exported fp32 ONNX model: fpga lowers
    it (``targets.lowering.lower`` with the fpga op set, as compile does)."""
    if target not in TARGET_SCHEME:
        raise BadInput(f"QAT for target {target!r} is not supported (supported: {', '.join(TARGET_SCHEME)})")
    scheme = TARGET_SCHEME[target]
    if scheme == "pow2":
        source = lower(source, FPGA_OPSET, hard_activations=hard_activations)
    return GraphNet(qat_graph(source, scheme, fold_bn=fold_bn), scheme, method, rounding)




def qat_job(model: str, target: str, data: str, out: str | Path, *, ckpt: str | None = None,
            width: float | None = None,
            resolution: int | None = None, frames: int | None = None, cfg: QatConfig = QatConfig(),
            calib: str | None = None, calib_clips: int = 32, calib_method: str = "minmax",
            val: str | None = None, hard_activations: bool = False, resume: bool = True) -> dict[str, Any]:
    """QAT of a zoo model (``ckpt``: plain or slimmable checkpoint) for ``target`` on the
    labelled clips ``data``, then the int8 artifact of the fine-tuned model through
    the target's normal int8 compile (same calibration clips).  Writes into ``out``:
    ``qat.pt`` (resumable), ``qat_model.onnx`` (the fine-tuned fp32 graph) and
    ``artifact/``; the artifact's fidelity against the QAT module on the
    calibration set's held-out clips goes to its ``notes.qat``.  Returns a summary."""
    if target not in TARGET_SCHEME:
        raise BadInput(f"QAT for target {target!r} is not supported (supported: {', '.join(TARGET_SCHEME)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variant = variant_for(model, ckpt, width, resolution, frames)  # open flags: the checkpoint's own
    if ckpt is None:
        log.warning("QAT of untrained weights (no --ckpt)")
        torch_model, notes = create_model(variant, 10).eval(), {}
    else:
        torch_model, notes = build_from_checkpoint(ckpt, variant)
    export_onnx(torch_model, variant.input_shape, out / "source.onnx")
    calib_set = read_calib(calib or data, variant.input_shape, clips=calib_clips, method=calib_method,
                           progress=False)
    net = prepare(onnx.load(str(out / "source.onnx")), target, hard_activations=hard_activations,
                  method=POW2_METHOD[calib_method])
    train = build_cache(data, variant.frames, variant.resolution, out / "cache" / "train")
    n_out = net.model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    if n_out and int(train.labels.max()) >= n_out:
        raise BadInput(f"{data}: labels up to {int(train.labels.max())}, the model has {n_out} classes")
    val_set = None
    if val is not None:
        v = build_cache(val, variant.frames, variant.resolution, out / "cache" / "val")
        val_set = (v.clips, v.labels)
    res = finetune(net, train.clips, train.labels, list(calib_set.clips), cfg, out=out / "qat.pt", resume=resume,
                   val=val_set)
    onnx.save(net.to_onnx(), str(out / "qat_model.onnx"))
    tgt = get_target(target, TargetOptions(hard_activations=hard_activations))
    art = tgt.compile(out / "qat_model.onnx", replace(variant, precision="int8"), out / "artifact", calib=calib_set)
    runner = tgt.load(art) if tgt.available() else None
    fid = None
    if runner is not None:
        held = list(calib_set.held_out)
        with torch.no_grad():
            ref = np.concatenate([net(torch.from_numpy(np.asarray(c, np.float32))).numpy() for c in held])
        got = np.concatenate([np.asarray(runner(np.asarray(c, np.float32))).reshape(1, -1) for c in held])
        fid = fidelity(ref, got, list(calib_set.held_out_labels)).to_json()
        if hasattr(runner, "close"):
            runner.close()
    qat_notes = {"scheme": net.scheme, "epochs": res.epochs_done, "steps": res.steps, "config": asdict(cfg),
                 "data": str(data), "history": res.history, "fidelity_vs_qat_module": fid,
                 "source_accuracy": notes.get("accuracy_table")}
    art = art.with_(notes={**art.notes, "qat": qat_notes}).write()
    return {"artifact": str(art.path), "status": art.status, "variant": art.variant, "target": target,
            "qat_model": str(out / "qat_model.onnx"), "val_top1": res.history[-1].get("val_top1") if res.history
            else None, **qat_notes}


__all__ = ["POW2_METHOD", "fold_bn", "prepare", "qat_job"]
