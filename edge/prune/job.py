"""The job behind ``edgevid prune``: load or build, prune in steps, re-estimate BN, fine-tune, save.

    prune_job(model_name, ckpt, ratio, out, data, epochs, ...) -> summary dict (the CLI's JSON)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping


from calib_data import shipped_manifest
from calib_data.labelled import read_labelled
from edge.checkpoint import clip_sampling, load_checkpoint, save_checkpoint, variant_for
from edge.core.errors import BadInput
from edge.models import create_model
from edge.models.registry import model_info
from edge.prune.finetune import fast_depthwise3d, finetune_kd, load_labelled, recalibrate_bn
from edge.prune.graph import PruneOptions
from edge.prune.spec import load_teacher, spec_of
from edge.prune.structured import prune_model
from edge.flops import complexity

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- the job

def prune_job(model_name: str, ckpt: str | None, ratio: float, out: str | Path, data: str | None = None,
              epochs: int = 0, criterion: str = "l1", global_: bool = False, round_to: int | None = None,
              iterative: int = 1, frames: int = 0, resolution: int = 0, limit: int | None = None,
              lr: float = 1e-3, recal_clips: int = 0) -> dict[str, Any]:
    """What ``edgevid prune`` does: load (or build), prune to ``ratio`` FLOPs cut in
    ``iterative`` steps, each followed by re-estimating BN statistics on ``recal_clips``
    clips of ``data`` (0: not) and a KD fine-tune of ``epochs``; save the pruned checkpoint."""
    PruneOptions(ratio, criterion, global_, round_to)  # checks the options before anything is loaded
    if iterative < 1:
        raise BadInput(f"--iterative must be >= 1, got {iterative}")
    if epochs < 0:
        raise BadInput(f"--epochs must be >= 0, got {epochs}")
    if recal_clips < 0:
        raise BadInput(f"--recal-clips must be >= 0, got {recal_clips}")
    ck = load_checkpoint(ckpt) if ckpt else None
    # frames / crop default to the checkpoint's own configuration (else the model's)
    variant = variant_for(model_name, ck, frames=frames, resolution=resolution, where=ckpt)
    family = model_info(model_name).family
    if ckpt and ck is not None:
        if ck.meta.get("prune"):
            raise BadInput(f"{ckpt}: already pruned; prune the original checkpoint")
        num_classes = ck.num_classes
        teacher = load_teacher(ckpt, variant)
        classes = ck.meta.get("classes")
        sampling = clip_sampling(ck.meta, ckpt)
    else:
        num_classes = model_info(model_name).num_classes
        teacher = create_model(variant).eval()
        classes, sampling = None, "stride"
    shape = variant.input_shape
    x = y = None
    if epochs > 0:
        x, y = load_labelled(data or _shipped(), variant.frames, variant.resolution, limit)
    recal = None
    if recal_clips > 0:
        recal, _ = read_labelled(data or _shipped(), variant.frames, variant.resolution, recal_clips)
    ref = complexity(teacher, shape)
    model, losses = teacher, []
    spec: Mapping[str, Any] = {}
    res = None
    for k in range(1, iterative + 1):
        step_ratio = 1 - (1 - ratio) ** (k / iterative) if iterative > 1 else ratio
        res = prune_model(model, family, shape, PruneOptions(step_ratio, criterion, global_, round_to),
                          reference_macs=ref.macs, name=model_name)
        model = res.model
        if recal is not None:
            recalibrate_bn(model, recal)
        if epochs > 0:
            with fast_depthwise3d(model):
                losses += finetune_kd(model, teacher, x, y, epochs, lr=lr)
        model.eval()
    assert res is not None
    spec = spec_of(model, teacher)
    after = complexity(model, shape)
    summary = {"model": model_name, "ratio": ratio, "criterion": criterion, "global": global_,
               "round_to": round_to, "iterative": iterative, "epochs": epochs, "input_shape": list(shape),
               "params_before": ref.params, "params_after": after.params,
               "gflops_before": ref.gflops, "gflops_after": after.gflops,
               "flops_cut": 1 - after.macs / ref.macs, "channel_ratio": res.channel_ratio,
               "recal_clips": 0 if recal is None else len(recal), "losses": losses}
    meta: dict[str, Any] = {"prune": {**{k: v for k, v in summary.items() if k != "losses"}, "spec": spec},
                            "sampling": sampling}  # clips of the pruned net are read as its source's were
    if ckpt:
        meta["prune"]["source"] = str(ckpt)
    if classes:
        meta["classes"] = list(classes)
    save_checkpoint(out, model, variant.with_(prune=ratio), num_classes, meta)
    summary["out"] = str(out)
    return summary


def _shipped() -> str:
    return str(shipped_manifest())
