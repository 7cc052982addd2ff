"""Structured channel pruning (torch-pruning's dependency graph) to a FLOPs target.

``prune_model`` removes whole channels (smaller weight tensors) until the
multiply-adds of one clip fall by ``ratio`` (within ``TOLERANCE``): it searches
torch-pruning's per-layer channel ratio and keeps the one whose FLOPs cut is
closest to the target.  Layers that must keep their channel count (stem,
classifier, and per family the layers that feed a channel-slicing operator
torch-pruning cannot trace: temporal shift, G-Ghost splits, the residual stream)
are listed in each family's ``FamilySpec.protected`` as module-path patterns.

A pruned model is described by ``PruneSpec``: for every module whose integer
attributes changed (``out_channels``, ``groups``, ``num_features``, ...) the new
values.  The spec and the state dict's shapes rebuild the pruned model from
``create_model(variant)`` alone (``rebuild``), so a pruned checkpoint loads
without the original and without unpickling modules.

Input of every model: (B, 3, frames, resolution, resolution) float32; output
(B, num_classes) logits; pruning changes neither.

Modules: ``graph`` (options/results, criteria, our blocks' custom pruners, resync),
``structured`` (prune_model), ``spec`` (spec_of / rebuild / load_pruned / load_teacher),
``finetune`` (KD fine-tune, BN re-estimation), ``job`` (prune_job, ``edgevid prune``).
"""
from edge.prune.finetune import (KDSchedule, fast_depthwise3d, finetune_kd, finetune_kd_resumable, kd_loss,
                                 load_labelled, logits_of, recalibrate_bn)
from edge.prune.graph import CRITERIA, TOLERANCE, PruneOptions, PruneResult, protected_layers, resync
from edge.prune.job import prune_job
from edge.prune.spec import load_pruned, load_teacher, rebuild, spec_of
from edge.prune.structured import prune_model

__all__ = ["CRITERIA", "TOLERANCE", "KDSchedule", "PruneOptions", "PruneResult", "fast_depthwise3d",
           "finetune_kd", "finetune_kd_resumable", "kd_loss", "load_labelled", "load_pruned", "load_teacher",
           "logits_of", "prune_job", "prune_model", "protected_layers", "rebuild", "recalibrate_bn", "resync",
           "spec_of"]
