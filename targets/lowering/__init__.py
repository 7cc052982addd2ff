"""Lowering: rewrite any ONNX model into an operator set (:mod:`targets.opset`).

``lower(model, opset, hard_activations=False)`` runs :data:`PASSES` in order.
Every pass is exact (outputs equal up to float rounding) except the hard
activations, which run only on request.  A pass touches only what the op set
rejects, so a model already inside the set comes back unchanged in meaning.

========================  ==========================================================
pass                      what it does
========================  ==========================================================
identities                drop Identity and inference Dropout
fold_batchnorm            Conv -> BatchNormalization folded into the Conv
hard_activations          Sigmoid -> ReLU6(x + 3) / 6 (only with hard_activations)
decompose_hard            HardSigmoid / HardSwish -> Mul, Add, Clip
rank5                     every (1, C, T, H, W) tensor carried as (T, C, H, W);
                          Conv3d -> sum over temporal taps of Conv2d, 3-D pooling ->
                          2-D pooling (:mod:`.conv3d`, :mod:`.pooling`, :mod:`.layout`)
batchnorm_to_conv         standalone BatchNormalization -> 1x1 depthwise Conv
grouped_convs             grouped Conv -> per-group dense Convs + Concat, or channel
                          repeat + depthwise (:mod:`.groups`), when the set lacks them
global_pools              whole-map pooling -> GlobalAveragePool/GlobalMaxPool
reduce_to_pool            ReduceMean/ReduceMax -> (global) pooling + Reshape
squeeze_to_reshape        Squeeze/Unsqueeze -> Reshape
simplify_layout           Reshape chains, no-op Reshape/Transpose removed
name_nodes                unique node names (the checker names nodes)
========================  ==========================================================
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import onnx

from edge.core.errors import BadInput
from targets.lowering.activations import decompose_hard, harden_sigmoid
from targets.lowering.batchnorm import batchnorm_to_conv, fold_batchnorm
from targets.lowering.cleanup import (global_pools, name_nodes, reduce_to_pool, remove_identities, simplify_layout,
                                      squeeze_to_reshape)
from targets.lowering.graph import Graph
from targets.lowering.groups import split_grouped_convs
from targets.lowering.layout_ops import lower_rank5
from targets.opset import OpSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pass:
    """One rewrite: ``run(graph, opset) -> number of rewrites``; ``approximate`` passes
    change the math and run only when asked for."""

    name: str
    run: Callable[[Graph, OpSet], int]
    approximate: bool = False


def _rank5(g: Graph, opset: OpSet) -> int:
    """Needed when the set caps the rank below 5 or lacks 3-D convolution."""
    if opset.max_rank >= 5 and 3 in opset.conv_dims():
        return 0
    nodes, count = lower_rank5(g)
    g.nodes = nodes
    return count


PASSES: tuple[Pass, ...] = (
    Pass("identities", remove_identities),
    Pass("fold_batchnorm", fold_batchnorm),
    Pass("hard_activations", harden_sigmoid, approximate=True),
    Pass("decompose_hard", decompose_hard),
    Pass("rank5", _rank5),
    Pass("batchnorm_to_conv", batchnorm_to_conv),
    Pass("grouped_convs", split_grouped_convs),
    Pass("global_pools", global_pools),
    Pass("reduce_to_pool", reduce_to_pool),
    Pass("squeeze_to_reshape", squeeze_to_reshape),
    Pass("simplify_layout", simplify_layout),
    Pass("identities", remove_identities),
    Pass("name_nodes", name_nodes),
)


def lower(model: onnx.ModelProto, opset: OpSet, hard_activations: bool = False) -> onnx.ModelProto:
    """``model`` rewritten into ``opset`` as far as exact rewrites (plus, with
    ``hard_activations``, the hard-sigmoid approximation) allow.

    The graph's inputs and outputs keep their names, shapes and types; what the
    set still rejects afterwards is for :func:`targets.checker.check` to report.
    Raises ``BadInput`` for a model ONNX cannot infer shapes for.
    """
    if len(model.graph.node) == 0:
        raise BadInput("the ONNX model has no nodes")
    counts: dict[str, int] = {}
    g = Graph(model)
    dynamic = [i.name for i in g.inputs if not g.info.get(i.name) or not g.info[i.name].static]
    if dynamic:
        log.warning("input(s) %s have dynamic dimensions: nodes on them cannot be lowered; export with a fixed "
                    "input shape (batch 1)", ", ".join(dynamic))
    for p in PASSES:
        if p.approximate and not hard_activations:
            continue
        n = p.run(g, opset)
        if n:  # shapes of the rewritten graph are inferred again for the next pass
            model = g.to_model()
            g = Graph(model)
        counts[p.name] = counts.get(p.name, 0) + n
    done = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing to do"
    log.info("lowered for %s: %s", opset.name, done)
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + \
        f"lowered for {opset.name} by edgevid ({done}{'; hard activations' if hard_activations else ''})"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - a failed rewrite is a bug, say where
        raise RuntimeError(f"lowering produced an invalid model: {str(e).splitlines()[0]}") from e
    return model


__all__ = ["lower", "Pass", "PASSES"]
