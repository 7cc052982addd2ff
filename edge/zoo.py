"""The zoo summary printed by ``edgevid models``: params and multiply-adds of every
registered model at its default input."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from edge.flops import complexity
from edge.models import MODELS, create_model, model_info
from edge.models.registry import variant as zoo_variant


def zoo_table(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in names or MODELS:
        info = model_info(name)
        variant = zoo_variant(name)
        with torch.device("meta"):  # shapes only: counted without allocating or computing
            model = create_model(variant)
        c = complexity(model, variant.input_shape)
        rows.append({"name": name, "family": info.family, "params": c.params, "gflops": round(c.gflops, 4),
                     "input_shape": list(variant.input_shape), "num_classes": info.num_classes,
                     "description": info.description, "published": info.published})
    return rows
