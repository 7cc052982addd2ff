"""The graph of a variant without its weights: what the latency predictor reads features from.

    untrained_onnx(tag, folder) -> Path    the untrained model of variant ``tag`` exported to
                                           ``folder/model.onnx`` (targets.export; torch)

``benchmarks.predict`` takes it as its ``export`` argument when no stored fp32 artifact of a
variant has the graph: the graph, not the weights, decides the features, so an untrained
export is exact.
"""
from __future__ import annotations

from pathlib import Path

from edge.core.variant import Variant


def untrained_onnx(tag: str, folder: str | Path) -> Path:
    """Export the untrained model of variant ``tag`` to ``folder/model.onnx``."""
    from edge.models import create_model  # torch: only when the graph must be exported
    from targets.export import export_onnx

    v = Variant.from_tag(tag)
    return export_onnx(create_model(v).eval(), v.input_shape, Path(folder) / "model.onnx").path
